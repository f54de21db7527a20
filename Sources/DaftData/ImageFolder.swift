import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The listing of a torchvision `ImageFolder` directory: `ROOT/CLASS/…/IMAGE`, one subfolder per class.
/// Classes and samples come in torchvision's order (`find_classes`, `make_dataset`): class folders sorted by
/// name; within a class, every directory below it (symlinks followed) sorted by its path, each directory's
/// files sorted by name — all comparisons by Unicode code point, as Python sorts `str`. Label = index of the
/// class in `classes`. Listing reads directories only, never an image.
///
/// Differences from torchvision, all of them errors or exclusions it does not make: entries whose name
/// starts with '.' (files and folders, e.g. `.DS_Store`, `.ipynb_checkpoints`) are ignored; only `.png`,
/// `.jpg` and `.jpeg` (any case) are images, and any other file is an error instead of being skipped; a
/// directory that cannot be read or a symlink loop is an error.
public struct ImageFolder: Sendable {
    /// One image of the folder and its label.
    public struct Sample: Sendable, Equatable {
        /// The file's path: `directory.path/CLASS/…/NAME`, as torchvision joins it.
        public let path: String
        /// Index of its class in `classes`.
        public let label: Int32

        /// A sample from its parts.
        public init(path: String, label: Int32) {
            self.path = path
            self.label = label
        }
    }

    /// The file name endings that are images (compared ignoring ASCII case).
    public static let supportedExtensions = [".png", ".jpg", ".jpeg"]

    /// The root directory.
    public let directory: URL
    /// Class folder names in label order (sorted by code point).
    public let classes: [String]
    /// Every image, in torchvision's order.
    public let samples: [Sample]

    /// Lists `directory`. Throws a one-line `DataError` naming the path when it is missing or not a directory,
    /// has no class folders, a class folder holds no image, a file is not an image, a directory cannot be read,
    /// or symlinks loop.
    public init(directory: URL) throws {
        self.directory = directory
        let root = directory.path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory) else {
            throw DataError("\(root): no such directory (expected an ImageFolder: one subfolder per class)")
        }
        guard isDirectory.boolValue else {
            throw DataError("\(root): not a directory (expected an ImageFolder: one subfolder per class)")
        }
        let top = try ImageFolder.entries(of: root)
        let classes = top.filter(\.isDirectory).map(\.name).sorted(by: ImageFolder.codePointOrder)
        guard !classes.isEmpty else {
            throw DataError("\(root): no class folders (an ImageFolder has one subfolder per class with the images inside)")
        }
        var samples: [Sample] = []
        for (label, name) in classes.enumerated() {
            let classDirectory = root + "/" + name
            var directories: [(path: String, files: [String])] = []
            try ImageFolder.walk(classDirectory, ancestors: [], into: &directories)
            directories.sort { ImageFolder.codePointOrder($0.path, $1.path) }
            let before = samples.count
            for d in directories {
                for file in d.files.sorted(by: ImageFolder.codePointOrder) {
                    let path = d.path + "/" + file
                    guard ImageFolder.isImageName(file) else {
                        throw DataError("\(path): not an image file (supported extensions: \(ImageFolder.supportedExtensions.joined(separator: ", ")))")
                    }
                    samples.append(Sample(path: path, label: Int32(label)))
                }
            }
            if samples.count == before {
                throw DataError("\(classDirectory): class folder '\(name)' has no images (supported extensions: \(ImageFolder.supportedExtensions.joined(separator: ", ")))")
            }
        }
        self.classes = classes
        self.samples = samples
    }

    /// Python's `str` order: by Unicode scalar values, which is the order of the UTF-8 bytes.
    public static func codePointOrder(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    /// Whether a file name ends in a supported extension, ignoring case.
    public static func isImageName(_ name: String) -> Bool {
        let lower = Array(name.lowercased().utf8)  // torchvision: filename.lower().endswith(extensions)
        return supportedExtensions.contains { ext in
            lower.count >= ext.utf8.count && lower.suffix(ext.utf8.count).elementsEqual(ext.utf8)
        }
    }

    private struct Entry {
        let name: String
        let isDirectory: Bool
    }

    /// The non-hidden entries of a directory; symlinks count as what they point to (a broken link is a file),
    /// as `os.scandir`'s `is_dir()` decides.
    private static func entries(of path: String) throws -> [Entry] {
        guard let dir = opendir(path) else {
            throw DataError("\(path): cannot read directory: \(String(cString: strerror(errno)))")
        }
        defer { closedir(dir) }
        var result: [Entry] = []
        while let entry = readdir(dir) {
            let name: String? = withUnsafePointer(to: &entry.pointee.d_name) { tuple in
                tuple.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(validatingCString: $0) }
            }
            guard let name else { throw DataError("\(path): an entry's name is not valid UTF-8") }
            if name.hasPrefix(".") { continue }  // also "." and ".."
            let type = entry.pointee.d_type
            var isDirectory = type == UInt8(DT_DIR)
            if type == UInt8(DT_LNK) || type == UInt8(DT_UNKNOWN) {
                var info = stat()
                isDirectory = stat(path + "/" + name, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
            }
            result.append(Entry(name: name, isDirectory: isDirectory))
        }
        return result
    }

    private struct DirectoryID: Hashable {
        let device: UInt64
        let inode: UInt64
    }

    /// Appends `path` and every directory below it (following symlinks) with their file names.
    private static func walk(_ path: String, ancestors: Set<DirectoryID>, into out: inout [(path: String, files: [String])]) throws {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw DataError("\(path): cannot read directory: \(String(cString: strerror(errno)))")
        }
        let id = DirectoryID(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        guard !ancestors.contains(id) else {
            throw DataError("\(path): symlink loop (this directory contains itself)")
        }
        let entries = try entries(of: path)
        out.append((path, entries.filter { !$0.isDirectory }.map(\.name)))
        var inside = ancestors
        inside.insert(id)
        for e in entries where e.isDirectory {
            try walk(path + "/" + e.name, ancestors: inside, into: &out)
        }
    }
}

extension ImageFolder {
    /// Class folder names whose sorted order is label order: `NN_NAME` from `names` (label zero-padded to the
    /// same width, at least 2 digits; characters other than letters, digits, '.', '_' and '-' in a name become
    /// '-', so "T-shirt/top" → `00_T-shirt-top`), or `class_NNN` (at least 3 digits) without names.
    public static func classFolderNames(numClasses: Int, names: [String]? = nil) -> [String] {
        let digits = String(max(numClasses - 1, 0)).count
        func padded(_ i: Int, _ width: Int) -> String {
            let s = String(i)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        guard let names else { return (0..<numClasses).map { "class_" + padded($0, max(3, digits)) } }
        precondition(names.count == numClasses, "\(names.count) class names for \(numClasses) classes")
        return names.enumerated().map { i, name in
            let safe = String(name.unicodeScalars.map { s -> Character in
                let ok = (s.isASCII && (CharacterSet.alphanumerics.contains(s) || s == "." || s == "_" || s == "-"))
                return ok ? Character(s) : "-"
            })
            return padded(i, max(2, digits)) + "_" + safe
        }
    }

    /// Writes `dataset` as an ImageFolder at `directory`: one folder per class (`folderNames`, by label), image
    /// i as `NNNNNN.png` (or `.jpg` at `jpegQuality` when `format` is `.jpeg`) in its class folder, i
    /// zero-padded to at least 6 digits. The folder is built as `directory.partial-…` beside it and renamed
    /// into place at the end, so an error leaves nothing at `directory`; an existing non-empty `directory` and a
    /// class without images are refused. Returns the number of files written.
    @discardableResult
    public static func write(_ dataset: ImageDataset, to directory: URL, folderNames: [String],
                             format: ImageCodec.Format = .png, jpegQuality: Int = 90) throws -> Int {
        precondition(folderNames.count == dataset.numClasses, "\(folderNames.count) folder names for \(dataset.numClasses) classes")
        let fm = FileManager.default
        let target = directory.standardizedFileURL
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: target.path, isDirectory: &isDirectory) {
            let empty = isDirectory.boolValue && ((try? fm.contentsOfDirectory(atPath: target.path))?.isEmpty ?? false)
            guard empty else {
                throw DataError("\(target.path): already exists (not overwriting an ImageFolder export; remove it or choose another output)")
            }
        }
        var perClass = [Int](repeating: 0, count: dataset.numClasses)
        for label in dataset.labels { perClass[Int(label)] += 1 }
        if let empty = perClass.firstIndex(of: 0) {
            throw DataError("\(dataset.name): class \(empty) (\(folderNames[empty])) has no images, and an ImageFolder cannot hold an empty class (torchvision refuses one; the labels after it would shift)")
        }
        if format == .jpeg && !(dataset.channels == 1 || dataset.channels == 3) {
            throw DataError("\(dataset.name): JPEG stores 1 or 3 channels, the data has \(dataset.channels)")
        }
        let partial = URL(fileURLWithPath: target.path + ".partial-\(getpid())-\(UUID().uuidString.prefix(8))")
        do {
            try fm.createDirectory(at: partial, withIntermediateDirectories: true)
            for name in folderNames { try fm.createDirectory(at: partial.appendingPathComponent(name), withIntermediateDirectories: false) }
            let digits = max(6, String(max(dataset.count - 1, 0)).count)
            let ext = format == .png ? "png" : "jpg"
            for i in 0..<dataset.count {
                let image = try DecodedImage(planar: dataset.image(at: i), channels: dataset.channels,
                                             height: dataset.height, width: dataset.width)
                let bytes = format == .png ? try ImageCodec.encodePNG(image) : try ImageCodec.encodeJPEG(image, quality: jpegQuality)
                let number = String(i), name = String(repeating: "0", count: max(0, digits - number.count)) + number
                let file = partial.appendingPathComponent(folderNames[Int(dataset.labels[i])]).appendingPathComponent("\(name).\(ext)")
                do { try Data(bytes).write(to: file) } catch {
                    throw DataError(file: file, "cannot write image: \(error.localizedDescription)")
                }
            }
            if rename(partial.path, target.path) != 0 {
                throw DataError("\(target.path): cannot move the finished export into place: \(String(cString: strerror(errno)))")
            }
        } catch {
            try? fm.removeItem(at: partial)
            if let e = error as? DataError { throw e }
            throw DataError("\(target.path): export failed: \(error.localizedDescription)")
        }
        return dataset.count
    }
}
