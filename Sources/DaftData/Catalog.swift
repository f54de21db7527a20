import Foundation

/// A split of Fashion-MNIST used by the fashion-shift benchmark. Ranges index the IDX file the split
/// comes from (`train-*` for every split but `test`, `t10k-*` for `test`); the same index is the
/// sample key of the domain shifts.
public enum FashionMNISTSplit: String, CaseIterable, Sendable {
    /// All 60,000 training images.
    case train
    /// All 10,000 test images (ID test under `@id`, OOD test under the other domains).
    case test
    /// Training images 0–49,999: the pretraining (source) split.
    case source
    /// Training images 50,000–53,999: the labelled target (ID) fine-tuning split.
    case targetTrain = "target-train"
    /// Training images 56,000–57,999: the ID validation split (disjoint from `target-train`).
    case targetVal = "target-val"

    /// `true` when the split comes from the test file.
    public var isTest: Bool { self == .test }

    /// The index range within the IDX file.
    public var range: Range<Int> {
        switch self {
        case .train: return 0 ..< 60_000
        case .test: return 0 ..< 10_000
        case .source: return 0 ..< 50_000
        case .targetTrain: return 50_000 ..< 54_000
        case .targetVal: return 56_000 ..< 58_000
        }
    }

    /// One line saying what the split is.
    public var summary: String {
        switch self {
        case .train: return "train images 0–59,999 (60,000)"
        case .test: return "test images 0–9,999 (10,000)"
        case .source: return "train images 0–49,999 (50,000): the pretraining split"
        case .targetTrain: return "train images 50,000–53,999 (4,000): labelled target (ID) training split"
        case .targetVal: return "train images 56,000–57,999 (2,000): ID validation split"
        }
    }
}

/// A parsed `--data` specification.
///
/// - `fashion-mnist:SPLIT[@DOMAIN]`: a Fashion-MNIST split under a named domain (default `clean`).
/// - `npy:X.npy,Y.npy[@DOMAIN]`: any dataset as two NPY files (see `ImageDataset.loadNPY`).
/// - `idx:IMAGES,LABELS[@DOMAIN]`: any MNIST-family IDX pair (gzip or plain).
/// - `folder:DIR[@DOMAIN]`: images in torchvision `ImageFolder` layout (see `ImageFolderDataset`).
public enum DataSpec: Equatable, Sendable, CustomStringConvertible {
    /// A Fashion-MNIST split under a named domain.
    case fashionMNIST(split: FashionMNISTSplit, domain: String)
    /// A pair of NPY files (images, labels) under a named domain.
    case npy(x: String, y: String, domain: String)
    /// A pair of IDX files (images, labels) under a named domain.
    case idx(images: String, labels: String, domain: String)
    /// A torchvision `ImageFolder` directory under a named domain.
    case folder(directory: String, domain: String)

    /// The canonical text of the specification.
    public var description: String {
        switch self {
        case let .fashionMNIST(split, domain): return "fashion-mnist:\(split.rawValue)\(domain == "clean" ? "" : "@" + domain)"
        case let .npy(x, y, domain): return "npy:\(x),\(y)\(domain == "clean" ? "" : "@" + domain)"
        case let .idx(i, l, domain): return "idx:\(i),\(l)\(domain == "clean" ? "" : "@" + domain)"
        case let .folder(d, domain): return "folder:\(d)\(domain == "clean" ? "" : "@" + domain)"
        }
    }

    /// The domain name the images are shifted with.
    public var domain: String {
        switch self {
        case let .fashionMNIST(_, d), let .npy(_, _, d), let .idx(_, _, d), let .folder(_, d): return d
        }
    }

    /// Parses a specification. Throws a one-line `DataError` that lists the valid choices for an
    /// unknown scheme, split or domain.
    public static func parse(_ text: String) throws -> DataSpec {
        let spec = text.trimmingCharacters(in: .whitespaces)
        guard let colon = spec.firstIndex(of: ":") else {
            throw DataError("data '\(text)': expected SCHEME:..., one of fashion-mnist:SPLIT[@DOMAIN], npy:X.npy,Y.npy[@DOMAIN], idx:IMAGES,LABELS[@DOMAIN], folder:DIR[@DOMAIN]")
        }
        let scheme = String(spec[..<colon]).lowercased()
        let rest = String(spec[spec.index(after: colon)...])
        let domains = FashionShift.domains.map(\.name)
        func checkDomain(_ d: String) throws -> String {
            guard domains.contains(d) else {
                throw DataError("data '\(text)': unknown domain '\(d)'; valid domains: \(domains.joined(separator: ", "))")
            }
            return d
        }
        switch scheme {
        case "fashion-mnist", "fashion_mnist", "fashionmnist":
            var splitName = rest, domain = "clean"
            if let at = rest.lastIndex(of: "@") {
                splitName = String(rest[..<at])
                domain = try checkDomain(String(rest[rest.index(after: at)...]))
            }
            guard let split = FashionMNISTSplit(rawValue: splitName) else {
                throw DataError("data '\(text)': unknown Fashion-MNIST split '\(splitName)'; valid splits: \(FashionMNISTSplit.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return .fashionMNIST(split: split, domain: domain)
        case "npy", "idx":
            var files = rest, domain = "clean"
            // `@DOMAIN` is recognised only when the text after the last `@` is a plain name (no path
            // characters), so paths that contain `@` still work.
            if let at = rest.lastIndex(of: "@") {
                let suffix = String(rest[rest.index(after: at)...])
                if !suffix.contains("/") && !suffix.contains(",") && !suffix.contains(".") {
                    domain = try checkDomain(suffix)
                    files = String(rest[..<at])
                }
            }
            let parts = files.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                let form = scheme == "npy" ? "npy:X.npy,Y.npy" : "idx:IMAGES,LABELS"
                throw DataError("data '\(text)': expected \(form) (two comma-separated paths)")
            }
            return scheme == "npy" ? .npy(x: parts[0], y: parts[1], domain: domain)
                                   : .idx(images: parts[0], labels: parts[1], domain: domain)
        case "folder":
            var directory = rest, domain = "clean"
            if let at = rest.lastIndex(of: "@") {
                let suffix = String(rest[rest.index(after: at)...])
                if !suffix.contains("/") && !suffix.contains(".") && domains.contains(suffix) {
                    domain = suffix
                    directory = String(rest[..<at])
                }
            }
            guard !directory.isEmpty else { throw DataError("data '\(text)': expected folder:DIR (an ImageFolder directory)") }
            return .folder(directory: directory, domain: domain)
        default:
            throw DataError("data '\(text)': unknown scheme '\(scheme)'; valid schemes: fashion-mnist, npy, idx, folder")
        }
    }
}

/// The named data sources: Fashion-MNIST splits and fashion-shift domains, where the files live,
/// and loading (with a per-process cache).
public enum DataCatalog {
    /// The standard Fashion-MNIST location (Debian package `dataset-fashion-mnist`).
    public static let systemFashionMNISTDirectory = URL(fileURLWithPath: "/usr/share/datasets/fashion-mnist")

    /// The environment variable that overrides the Fashion-MNIST directory.
    public static let fashionMNISTDirectoryVariable = "DAFT_FASHION_MNIST_DIR"

    /// `$DAFT_FASHION_MNIST_DIR` if set and non-empty, else `/usr/share/datasets/fashion-mnist`.
    public static var defaultFashionMNISTDirectory: URL {
        if let d = ProcessInfo.processInfo.environment[fashionMNISTDirectoryVariable], !d.isEmpty {
            return URL(fileURLWithPath: d)
        }
        return systemFashionMNISTDirectory
    }

    /// Fashion-MNIST class names, by label.
    public static let fashionMNISTClassNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

    /// Every named split as a data specification (`fashion-mnist:train`, ...).
    public static var splitNames: [String] { FashionMNISTSplit.allCases.map { "fashion-mnist:\($0.rawValue)" } }

    /// Every named domain (`clean`, `id`, then the OOD shifts).
    public static var domainNames: [String] { FashionShift.domains.map(\.name) }

    /// Every named split followed by every named domain as `@DOMAIN` (for `daft data list`).
    public static var names: [String] { splitNames + domainNames.map { "@" + $0 } }

    /// Human-readable lines describing every split and domain (for `daft data list`).
    public static var listing: [String] {
        var lines = ["splits (fashion-mnist:SPLIT[@DOMAIN]):"]
        for s in FashionMNISTSplit.allCases { lines.append("  fashion-mnist:\(s.rawValue)  \(s.summary)") }
        lines.append("domains (@DOMAIN; default clean):")
        for d in FashionShift.domains {
            let role = d.name == "id" ? " [ID]" : (FashionShift.oodDomainNames.contains(d.name) ? " [OOD]" : "")
            lines.append("  @\(d.name)\(role)  \(d.summary)")
        }
        lines.append("also: npy:X.npy,Y.npy[@DOMAIN], idx:IMAGES,LABELS[@DOMAIN], folder:DIR[@DOMAIN] (torchvision ImageFolder, PNG/JPEG)")
        return lines
    }

    /// The domain called `name`; throws a `DataError` listing the valid names if there is none.
    public static func domain(named name: String) throws -> Domain {
        guard let d = FashionShift.domain(named: name) else {
            throw DataError("unknown domain '\(name)'; valid domains: \(domainNames.joined(separator: ", "))")
        }
        return d
    }

    /// The IDX file `base` in `directory`: `base.gz` if present, else `base` (uncompressed).
    static func idxFile(_ directory: URL, _ base: String) -> URL {
        let gz = directory.appendingPathComponent(base + ".gz")
        if FileManager.default.fileExists(atPath: gz.path) { return gz }
        let plain = directory.appendingPathComponent(base)
        return FileManager.default.fileExists(atPath: plain.path) ? plain : gz
    }

    /// The whole Fashion-MNIST training (`test == false`) or test file pair in `directory`, clean.
    /// Cached per process.
    public static func fashionMNIST(test: Bool, directory: URL? = nil) throws -> ImageDataset {
        let dir = directory ?? defaultFashionMNISTDirectory
        let prefix = test ? "t10k" : "train"
        let key = "raw|\(dir.standardizedFileURL.path)|\(prefix)"
        if let d = cache.get(key) { return d }
        let d = try ImageDataset.loadIDX(images: idxFile(dir, "\(prefix)-images-idx3-ubyte"),
                                         labels: idxFile(dir, "\(prefix)-labels-idx1-ubyte"),
                                         numClasses: 10, name: "fashion-mnist:\(test ? "test" : "train")")
        cache.set(key, d)
        return d
    }

    /// Loads the dataset a specification names, with its domain shift applied at load. Sample keys of
    /// the shift are indices into the underlying file (for NPY/IDX: row numbers). Fashion-MNIST
    /// results are cached per process.
    public static func load(_ spec: DataSpec, fashionMNISTDirectory: URL? = nil) throws -> ImageDataset {
        let domain = try self.domain(named: spec.domain)
        switch spec {
        case let .fashionMNIST(split, _):
            let dir = fashionMNISTDirectory ?? defaultFashionMNISTDirectory
            let key = "spec|\(dir.standardizedFileURL.path)|\(spec)"
            if let d = cache.get(key) { return d }
            let whole = try fashionMNIST(test: split.isTest, directory: dir)
            let range = split.range
            guard range.upperBound <= whole.count else {
                throw DataError("\(spec): split needs \(range.upperBound) images, the file has \(whole.count)")
            }
            let part = range == 0 ..< whole.count ? whole : whole.subset(range)
            let d = part.applying(domain, sampleKeys: Array(range), name: spec.description)
            cache.set(key, d)
            return d
        case let .npy(x, y, _):
            let d = try ImageDataset.loadNPY(x: URL(fileURLWithPath: x), y: URL(fileURLWithPath: y), name: spec.description)
            return d.applying(domain, name: spec.description)
        case let .idx(i, l, _):
            let d = try ImageDataset.loadIDX(images: URL(fileURLWithPath: i), labels: URL(fileURLWithPath: l), name: spec.description)
            return d.applying(domain, name: spec.description)
        case let .folder(d, _):
            throw DataError("\(spec): an image folder is streamed, not loaded into memory; open it with DataCatalog.open (directory \(d))")
        }
    }

    /// Forgets every cached dataset.
    public static func clearCache() { cache.clear() }

    static let cache = DatasetCache()
}

/// A thread-safe per-process dictionary of loaded datasets.
final class DatasetCache: @unchecked Sendable {
    private var entries: [String: ImageDataset] = [:]
    private let lock = NSLock()

    func get(_ key: String) -> ImageDataset? {
        lock.lock(); defer { lock.unlock() }
        return entries[key]
    }

    func set(_ key: String, _ value: ImageDataset) {
        lock.lock(); defer { lock.unlock() }
        entries[key] = value
    }

    func clear() {
        lock.lock(); defer { lock.unlock() }
        entries.removeAll()
    }
}

/// Loads the dataset named by a `--data` specification (`fashion-mnist:SPLIT[@DOMAIN]`,
/// `npy:X.npy,Y.npy[@DOMAIN]`, `idx:IMAGES,LABELS[@DOMAIN]`), with the domain shift applied.
/// Errors are one-line `DataError`s (or `InteropError`s from the NPY reader) naming the file or spec.
public func loadDataset(spec: String) throws -> ImageDataset {
    try DataCatalog.load(DataSpec.parse(spec))
}
