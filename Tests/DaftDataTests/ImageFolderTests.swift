import Foundation
import XCTest
import DaftTestSupport
@testable import DaftData
#if canImport(Glibc)
import Glibc
#endif

/// ImageFolder listing against torchvision (DAFT_PYTHON), its one-line errors, and the export round trip.
final class ImageFolderTests: XCTestCase {
    private func touch(_ root: URL, _ relative: String) throws {
        let url = root.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        XCTAssertTrue(FileManager.default.createFile(atPath: url.path, contents: Data()), relative)
    }

    /// Class names that sort differently by code point than by Swift's String <, or by case-insensitive or
    /// numeric order; nested folders whose sorted paths are not depth-first order; mixed-case extensions;
    /// symlinked folders and files (torchvision follows them). Files are empty: listing must not decode.
    func testListingMatchesTorchvision() throws {
        let root = try makeTempDir(self).appendingPathComponent("data")
        let files = [
            "cat/a.PNG", "cat/b.Png", "cat/c.jpg", "cat/sub/x.png", "cat/sub/deeper/z.jpeg", "cat/sub c/y.JPG",
            "cat/sub-1/w.png", "cat/sub/B.png", "cat/sub/a.png",
            "Dog/1.jpeg", "Dog/10.jpeg", "Dog/9.jpeg", "Zebra/ü.png", "Zebra/u.png", "Zebra/z.png",
            "ábc/one.png", "a\u{301}bc/two.png",  // NFC and NFD spellings: two different folders
            "日本/写真.jpg", "🐱/cat.png", "\u{FF21}/fullwidth.png", "_under/x.png", "a b/x.png", "a.b/x.png",
            "10/x.png", "9/x.png", "#hash/x.png", "UPPER/x.JPEG", "lower/x.jpeg",
        ]
        for f in files { try touch(root, f) }
        let fm = FileManager.default
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("Dog/linked").path,
                                  withDestinationPath: root.appendingPathComponent("cat/sub").path)
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("Dog/link.png").path, withDestinationPath: "../cat/a.PNG")
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("linkclass").path, withDestinationPath: "Zebra")

        let folder = try ImageFolder(directory: root)
        let script = """
            import json, sys, torchvision
            ds = torchvision.datasets.ImageFolder(sys.argv[1])
            n = len(sys.argv[1]) + 1
            print(json.dumps({'classes': ds.classes, 'samples': [[p[n:], t] for p, t in ds.samples]}))
            """
        let text = try TestPython.run(script, [root.path])
        let reference = try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
        let classes = reference["classes"] as! [String]
        let samples = (reference["samples"] as! [[Any]]).map { ($0[0] as! String, $0[1] as! Int) }
        // Compare as UTF-8 bytes: Swift's String == would call the NFC and NFD names equal.
        XCTAssertEqual(folder.classes.map { Array($0.utf8) }, classes.map { Array($0.utf8) })
        XCTAssertEqual(folder.samples.count, samples.count)
        let prefix = root.path.utf8.count + 1
        for (ours, theirs) in zip(folder.samples, samples) {
            XCTAssertEqual(Array(ours.path.utf8.dropFirst(prefix)), Array(theirs.0.utf8), "\(ours.path) vs \(theirs.0)")
            XCTAssertEqual(Int(ours.label), theirs.1, ours.path)
        }
        XCTAssertEqual(folder.samples.count, files.count + 4 + 1 + 3)  // + Dog/linked/* (4), Dog/link.png, linkclass/* (3)
        XCTAssertTrue(folder.samples.allSatisfy { $0.path.hasPrefix(root.path + "/") })
    }

    /// Hidden files and folders are skipped (torchvision would list `.x.png` and a `.hidden` class).
    func testHiddenEntriesAreIgnored() throws {
        let root = try makeTempDir(self)
        for f in ["a/1.png", "a/.DS_Store", "a/.x.png", "a/.ipynb_checkpoints/2.png", ".hidden/3.png", "b/4.jpg"] { try touch(root, f) }
        let folder = try ImageFolder(directory: root)
        XCTAssertEqual(folder.classes, ["a", "b"])
        XCTAssertEqual(folder.samples.map(\.path), [root.path + "/a/1.png", root.path + "/b/4.jpg"])
        XCTAssertEqual(folder.samples.map(\.label), [0, 1])
    }

    func testErrorsAreOneLineAndNameThePath() throws {
        let base = try makeTempDir(self)
        assertOneLineError(try ImageFolder(directory: base.appendingPathComponent("missing")),
                           contains: [base.appendingPathComponent("missing").path, "no such directory"])
        try touch(base, "file.png")
        assertOneLineError(try ImageFolder(directory: base.appendingPathComponent("file.png")), contains: ["file.png", "not a directory"])

        let noClasses = base.appendingPathComponent("noclasses")
        try touch(noClasses, "loose.png")
        assertOneLineError(try ImageFolder(directory: noClasses), contains: [noClasses.path, "no class folders"])

        let empty = base.appendingPathComponent("empty")
        try touch(empty, "a/1.png")
        try FileManager.default.createDirectory(at: empty.appendingPathComponent("b/nested"), withIntermediateDirectories: true)
        try touch(empty, "b/.hidden.png")
        assertOneLineError(try ImageFolder(directory: empty), contains: [empty.path + "/b", "class folder 'b' has no images", ".png, .jpg, .jpeg"])

        let other = base.appendingPathComponent("other")
        try touch(other, "a/1.png")
        try touch(other, "a/sub/notes.txt")
        assertOneLineError(try ImageFolder(directory: other),
                           contains: [other.path + "/a/sub/notes.txt", "not an image file", "supported extensions: .png, .jpg, .jpeg"])
        let webp = base.appendingPathComponent("webp")
        try touch(webp, "a/1.webp")
        assertOneLineError(try ImageFolder(directory: webp), contains: ["a/1.webp", "not an image file"])

        let loop = base.appendingPathComponent("loop")
        try touch(loop, "a/1.png")
        try FileManager.default.createSymbolicLink(atPath: loop.appendingPathComponent("a/again").path, withDestinationPath: "..")
        assertOneLineError(try ImageFolder(directory: loop), contains: [loop.path + "/a/again/a", "symlink loop"])
    }

    /// Listing reads directories only: 4,000 empty "images" list in torchvision's order.
    func testLargeFolderListsWithoutDecoding() throws {
        let root = try makeTempDir(self)
        for c in 0..<4 {
            let dir = root.appendingPathComponent("c\(c)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for i in 0..<1000 {
                let fd = open(dir.appendingPathComponent("\(i).png").path, O_WRONLY | O_CREAT, 0o644)
                XCTAssertGreaterThanOrEqual(fd, 0)
                close(fd)
            }
        }
        let start = Date()
        let folder = try ImageFolder(directory: root)
        print("listed \(folder.samples.count) files in \(Date().timeIntervalSince(start)) s")
        XCTAssertEqual(folder.samples.count, 4_000)
        XCTAssertEqual(folder.samples[0].path, root.path + "/c0/0.png")
        XCTAssertEqual(folder.samples[1].path, root.path + "/c0/1.png")
        XCTAssertEqual(folder.samples[2].path, root.path + "/c0/10.png")  // string order, as Python sorts
        XCTAssertEqual(folder.samples[1000].label, 1)
    }

    func testClassFolderNames() {
        XCTAssertEqual(ImageFolder.classFolderNames(numClasses: 10, names: DataCatalog.fashionMNISTClassNames),
                       ["00_T-shirt-top", "01_Trouser", "02_Pullover", "03_Dress", "04_Coat", "05_Sandal", "06_Shirt",
                        "07_Sneaker", "08_Bag", "09_Ankle-boot"])
        XCTAssertEqual(ImageFolder.classFolderNames(numClasses: 3), ["class_000", "class_001", "class_002"])
        let many = ImageFolder.classFolderNames(numClasses: 1234)
        XCTAssertEqual(many[7], "class_0007")
        XCTAssertEqual(many, many.sorted(by: ImageFolder.codePointOrder))
        let named = ImageFolder.classFolderNames(numClasses: 120, names: (0..<120).map { "n\(119 - $0)" })
        XCTAssertEqual(named[5], "005_n114")
        XCTAssertEqual(named, named.sorted(by: ImageFolder.codePointOrder))
    }

    /// Export → ImageFolder → decode gives back the dataset's pixels and labels (PNG exactly, JPEG closely).
    func testExportRoundTrip() throws {
        let base = try makeTempDir(self)
        let grey = syntheticDataset(count: 12, size: 16, classes: 3)
        var rgbPixels = [UInt8](repeating: 0, count: 5 * 3 * 8 * 10)
        for i in 0..<rgbPixels.count { rgbPixels[i] = UInt8((i * 37) % 251) }
        let rgb = try ImageDataset(name: "rgb", channels: 3, height: 8, width: 10, numClasses: 2, pixels: rgbPixels, labels: [1, 0, 1, 1, 0])
        for (dataset, name) in [(grey, "grey"), (rgb, "rgb")] {
            let out = base.appendingPathComponent(name)
            let folders = ImageFolder.classFolderNames(numClasses: dataset.numClasses)
            XCTAssertEqual(try ImageFolder.write(dataset, to: out, folderNames: folders), dataset.count)
            let folder = try ImageFolder(directory: out)
            XCTAssertEqual(folder.classes, folders)
            XCTAssertEqual(folder.samples.count, dataset.count)
            for sample in folder.samples {
                let index = Int(URL(fileURLWithPath: sample.path).deletingPathExtension().lastPathComponent)!
                XCTAssertEqual(sample.label, dataset.labels[index])
                let image = try ImageCodec.decode(contentsOf: URL(fileURLWithPath: sample.path))
                XCTAssertEqual(image.channels, dataset.channels)
                XCTAssertEqual(image.planarPixels, Array(dataset.image(at: index)), sample.path)
            }
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: base.path).filter { $0.contains("partial") }, [])
        }
        let jpegOut = base.appendingPathComponent("jpeg")
        try ImageFolder.write(rgb, to: jpegOut, folderNames: ["x", "y"], format: .jpeg, jpegQuality: 95)
        let jpegFolder = try ImageFolder(directory: jpegOut)
        XCTAssertTrue(jpegFolder.samples.allSatisfy { $0.path.hasSuffix(".jpg") })
        XCTAssertEqual(try ImageCodec.decode(contentsOf: URL(fileURLWithPath: jpegFolder.samples[0].path)).channels, 3)
    }

    /// An existing output, an empty class, or a failure half-way leave nothing behind and say why in one line.
    func testExportRefusesAndLeavesNothingOnError() throws {
        let base = try makeTempDir(self)
        let data = syntheticDataset(count: 6, size: 8, classes: 3)
        let existing = base.appendingPathComponent("existing")
        try touch(existing, "keep.txt")
        assertOneLineError(try ImageFolder.write(data, to: existing, folderNames: ImageFolder.classFolderNames(numClasses: 3)),
                           contains: [existing.path, "already exists"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: existing.appendingPathComponent("keep.txt").path))

        let emptyDir = base.appendingPathComponent("emptydir")
        try FileManager.default.createDirectory(at: emptyDir, withIntermediateDirectories: true)
        XCTAssertEqual(try ImageFolder.write(data, to: emptyDir, folderNames: ImageFolder.classFolderNames(numClasses: 3)), 6)

        let twoClasses = try ImageDataset(name: "two", channels: 1, height: 8, width: 8, numClasses: 3,
                                          pixels: [UInt8](repeating: 9, count: 2 * 64), labels: [0, 2])
        assertOneLineError(try ImageFolder.write(twoClasses, to: base.appendingPathComponent("gap"), folderNames: ["a", "b", "c"]),
                           contains: ["two", "class 1 (b) has no images"])

        let broken = base.appendingPathComponent("broken")
        assertOneLineError(try ImageFolder.write(data, to: broken, folderNames: ["ok", "not/possible", "fine"]),
                           contains: [broken.path])
        let left = try FileManager.default.contentsOfDirectory(atPath: base.path).sorted()
        XCTAssertEqual(left, ["emptydir", "existing"])
    }
}
