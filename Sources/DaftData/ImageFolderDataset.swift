import Foundation

/// `folder:DIR`: a torchvision `ImageFolder` streamed from disk — never loaded whole. Listing reads no image;
/// each batch decodes its own samples (in parallel), converts them to the model's channels as torchvision's
/// loader does (`DecodedImage.converted`), and transforms them:
///
/// - **resized** (`imageSize` set: `--image-size S`, or 224 for a 7×7-stem model): torchvision's recipe —
///   training `RandomResizedCrop(S)` + horizontal flip, evaluation `Resize(round(S·256/224))` + `CenterCrop(S)`;
/// - **native** (`imageSize` nil: small-image models): every image must have the size of the folder's first
///   image; training uses daft's standard augmentation (±2 px translation, flip) exactly as for in-memory data,
///   so a folder exported from a data set trains bit for bit like the data set itself.
///
/// A named domain shift (`folder:DIR@rotate`) is applied after the transform, with the sample index as key.
/// With `skipBadImages` every image is decoded once at load and the unreadable ones are left out (counted in
/// `skipped`); without it a bad file is a one-line error naming it when a batch reaches it.
public struct ImageFolderDataset: LabelledImages {
    public let name: String
    public let directory: URL
    /// Class folder names in label order.
    public let classes: [String]
    /// The files of this set, in torchvision's order.
    public let files: [String]
    public let labels: [Int32]
    public let channels: Int
    public let height: Int
    public let width: Int
    /// The crop size of the torchvision transforms; nil: images keep their own size.
    public let imageSize: Int?
    /// The domain shift applied after the transform.
    public let domain: Domain
    /// Files left out because they could not be decoded (`skipBadImages`), with their errors.
    public let skipped: [String]
    /// Threads decoding one batch (each takes every `workers`-th sample).
    public let workers: Int

    public var count: Int { files.count }
    public var numClasses: Int { classes.count }

    /// Lists `directory` (torchvision order) for a model with `channels` input channels. `imageSize` nil keeps
    /// the images' own size (the first image's; others must match).
    public init(directory: URL, name: String, channels: Int, imageSize: Int?, domain: Domain, skipBadImages: Bool,
                workers: Int = ProcessInfo.processInfo.activeProcessorCount) throws {
        guard channels == 1 || channels == 3 else {
            throw DataError("\(directory.path): image folders feed 1-channel (grey) or 3-channel (RGB) models, this one takes \(channels)")
        }
        if let s = imageSize, s <= 0 { throw DataError("--image-size must be positive, got \(s)") }
        let folder = try ImageFolder(directory: directory)
        var files = folder.samples.map(\.path), labels = folder.samples.map(\.label)
        var skipped: [String] = []
        if skipBadImages {
            let ok = ImageFolderDataset.decodable(files)
            skipped = zip(files, ok).compactMap { $1 == nil ? nil : $1 }
            let keep = ok.indices.filter { ok[$0] == nil }
            files = keep.map { files[$0] }; labels = keep.map { labels[$0] }
            guard !files.isEmpty else { throw DataError("\(directory.path): no image could be decoded (\(skipped.count) bad files)") }
        }
        var h = imageSize ?? 0, w = imageSize ?? 0
        if imageSize == nil {
            let first = try ImageCodec.decode(contentsOf: URL(fileURLWithPath: files[0]))
            h = first.height; w = first.width
        }
        self.init(name: name, directory: directory, classes: folder.classes, files: files, labels: labels, channels: channels,
                  height: h, width: w, imageSize: imageSize, domain: domain, skipped: skipped, workers: max(1, workers))
    }

    init(name: String, directory: URL, classes: [String], files: [String], labels: [Int32], channels: Int, height: Int, width: Int,
         imageSize: Int?, domain: Domain, skipped: [String], workers: Int) {
        self.name = name; self.directory = directory; self.classes = classes; self.files = files; self.labels = labels
        self.channels = channels; self.height = height; self.width = width; self.imageSize = imageSize
        self.domain = domain; self.skipped = skipped; self.workers = workers
    }

    public func prefix(_ n: Int) -> any LabelledImages {
        let k = max(0, min(n, count))
        return ImageFolderDataset(name: name, directory: directory, classes: classes, files: Array(files[..<k]), labels: Array(labels[..<k]),
                                  channels: channels, height: height, width: width, imageSize: imageSize, domain: domain, skipped: skipped, workers: workers)
    }

    /// The uint8 CHW image of sample `index` after decoding, channel conversion and the transform.
    public func image(at index: Int, training: Bool, seed: UInt64, epoch: Int) throws -> [UInt8] {
        let path = files[index]
        var image = try ImageCodec.decode(contentsOf: URL(fileURLWithPath: path)).converted(toChannels: channels)
        if let size = imageSize {
            image = training ? ImageTransforms.trainTransform(image, size: size, seed: seed, epoch: epoch, sampleIndex: index)
                             : ImageTransforms.evalTransform(image, size: size)
        } else if image.width != width || image.height != height {
            throw DataError("\(path): image is \(image.width)×\(image.height), the folder's first image is \(width)×\(height); pass --image-size S to resize every image")
        }
        return image.planarPixels
    }

    public func batch(indices: [Int], normalization: Normalization, augmentation: Augmentation?, seed: UInt64,
                      epoch: Int) throws -> (x: [Float], y: [Int32]) {
        let size = channels * height * width, n = indices.count
        let resized = imageSize != nil
        var pixels = [UInt8](repeating: 0, count: n * size)
        let errors = ErrorSlot()
        pixels.withUnsafeMutableBufferPointer { out in
            nonisolated(unsafe) let base = out.baseAddress!
            DispatchQueue.concurrentPerform(iterations: min(workers, n)) { worker in
                for k in stride(from: worker, to: n, by: workers) {
                    do {
                        // the torchvision recipe augments in the transform; native-size images augment in makeBatch
                        var img = try image(at: indices[k], training: resized && augmentation != nil, seed: seed, epoch: epoch)
                        if resized, let a = augmentation, !a.corruptions.isEmpty {  // the robust recipe, after the transform
                            img = img.withUnsafeBufferPointer { a.corrupt($0, channels: channels, height: height, width: width,
                                                                         seed: seed, epoch: epoch, sampleIndex: indices[k]) }
                        }
                        (base + k * size).update(from: img, count: size)
                    } catch { errors.record(k, error) }
                }
            }
        }
        if let e = errors.first { throw e }
        var decoded = ImageDataset(unchecked: name, channels: channels, height: height, width: width, numClasses: numClasses,
                                   pixels: pixels, labels: indices.map { labels[$0] })
        if !domain.steps.isEmpty { decoded = decoded.applying(domain, sampleKeys: indices) }
        return makeBatch(dataset: decoded, indices: Array(0..<n), normalization: normalization,
                         augmentation: resized ? nil : augmentation, seed: seed, epoch: epoch, sampleKeys: indices)
    }

    /// For each file, nil when it decodes, else its one-line error (decoded in parallel, nothing kept).
    static func decodable(_ files: [String]) -> [String?] {
        var result = [String?](repeating: nil, count: files.count)
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: files.count) { i in
            do { _ = try ImageCodec.decode(contentsOf: URL(fileURLWithPath: files[i])) } catch {
                lock.lock(); result[i] = "\(error)"; lock.unlock()
            }
        }
        return result
    }
}

/// The error of the lowest batch position that failed (so the message does not depend on thread timing).
final class ErrorSlot: @unchecked Sendable {
    private var slot: (Int, Error)?
    private let lock = NSLock()
    func record(_ position: Int, _ error: Error) {
        lock.lock(); defer { lock.unlock() }
        if slot == nil || position < slot!.0 { slot = (position, error) }
    }
    var first: Error? { lock.lock(); defer { lock.unlock() }; return slot?.1 }
}

/// How a model sees image folders: its input channels, and the crop size of the torchvision transforms
/// (`--image-size`; nil keeps the images' own size).
public struct FolderImageOptions: Sendable {
    public var channels: Int
    public var imageSize: Int?
    public var skipBadImages: Bool
    /// Decode threads per batch.
    public var workers: Int
    public init(channels: Int, imageSize: Int?, skipBadImages: Bool = false, workers: Int = ProcessInfo.processInfo.activeProcessorCount) {
        self.channels = channels; self.imageSize = imageSize; self.skipBadImages = skipBadImages; self.workers = workers
    }
}

extension DataCatalog {
    /// The data set a specification names: an image folder streamed for a model with `folder` options, anything
    /// else loaded into memory (`load`).
    public static func open(_ spec: DataSpec, folder options: FolderImageOptions) throws -> any LabelledImages {
        guard case let .folder(directory, domainName) = spec else { return try load(spec) }
        return try ImageFolderDataset(directory: URL(fileURLWithPath: directory), name: spec.description, channels: options.channels,
                                      imageSize: options.imageSize, domain: try domain(named: domainName), skipBadImages: options.skipBadImages,
                                      workers: options.workers)
    }
}
