import Foundation
import XCTest
@testable import DaftData

final class IDXTests: XCTestCase {
    func testRealFashionMNISTSizesAndClassCounts() throws {
        try XCTSkipUnless(fashionMNISTAvailable, "Fashion-MNIST not installed")
        let train = try DataCatalog.fashionMNIST(test: false)
        let test = try DataCatalog.fashionMNIST(test: true)
        XCTAssertEqual(train.count, 60_000)
        XCTAssertEqual(test.count, 10_000)
        for d in [train, test] {
            XCTAssertEqual([d.channels, d.height, d.width, d.numClasses], [1, 28, 28, 10])
            XCTAssertEqual(d.pixels.count, d.count * 784)
        }
        XCTAssertEqual(train.classCounts(), [Int](repeating: 6_000, count: 10))
        XCTAssertEqual(test.classCounts(), [Int](repeating: 1_000, count: 10))
    }

    func testRealFashionMNISTFirstLabelsAndPixels() throws {
        try XCTSkipUnless(fashionMNISTAvailable, "Fashion-MNIST not installed")
        // Independent reading with Python: gzip.open(...).read()[8:28] for the labels, and sums of
        // the first two training images' bytes (784 each, after the 16-byte header).
        let train = try DataCatalog.fashionMNIST(test: false)
        let test = try DataCatalog.fashionMNIST(test: true)
        XCTAssertEqual(Array(train.labels.prefix(20)), [9, 0, 0, 3, 0, 2, 7, 2, 5, 5, 0, 9, 5, 5, 7, 9, 1, 0, 6, 4])
        XCTAssertEqual(Array(test.labels.prefix(20)), [9, 2, 1, 1, 6, 1, 4, 6, 5, 7, 4, 5, 7, 3, 4, 1, 2, 4, 8, 0])
        XCTAssertEqual(train.image(at: 0).reduce(0) { $0 + Int($1) }, 76_247)
        XCTAssertEqual(train.image(at: 1).reduce(0) { $0 + Int($1) }, 84_598)
        // Whole-set mean/std agree with the published normalisation constants.
        let n = Normalization.estimate(from: train)
        XCTAssertEqual(n.mean[0], Normalization.fashionMNIST.mean[0], accuracy: 1e-4)
        XCTAssertEqual(n.std[0], Normalization.fashionMNIST.std[0], accuracy: 1e-4)
    }

    func testPlainAndGzipFilesReadTheSame() throws {
        let dir = try makeTempDir(self)
        let bytes = idxBytes(dims: [2, 2, 3], data: Array(0..<12))
        let plain = dir.appendingPathComponent("x-idx3-ubyte")
        try Data(bytes).write(to: plain)
        let gz = dir.appendingPathComponent("x-idx3-ubyte.gz")
        try writeGzip(bytes, to: gz)
        for url in [plain, gz] {
            let a = try IDXArray.read(url)
            XCTAssertEqual(a.dims, [2, 2, 3])
            XCTAssertEqual(a.bytes, Array(0..<12))
        }
    }

    func testMalformedIDXFilesGiveOneLineErrorsNamingTheFile() throws {
        let dir = try makeTempDir(self)
        func file(_ name: String, _ bytes: [UInt8]) throws -> URL {
            let u = dir.appendingPathComponent(name)
            try Data(bytes).write(to: u)
            return u
        }
        let badMagic = try file("bad-magic", [0x12, 0x34, 0x08, 0x03] + [UInt8](repeating: 0, count: 20))
        assertOneLineError(try IDXArray.read(badMagic), contains: ["bad-magic", "magic"])

        let badType = try file("bad-type", idxBytes(dims: [1], data: [0, 0, 0, 0], magicType: 0x0D))
        assertOneLineError(try IDXArray.read(badType), contains: ["bad-type", "element type 0x0d"])

        let truncated = try file("truncated", idxBytes(dims: [3, 2, 2], data: [UInt8](repeating: 1, count: 10)))
        assertOneLineError(try IDXArray.read(truncated), contains: ["truncated", "3×2×2", "12", "10"])

        let header = try file("short-header", [0, 0, 8, 3, 0, 0])
        assertOneLineError(try IDXArray.read(header), contains: ["short-header", "truncated IDX header"])

        let trailing = try file("trailing", idxBytes(dims: [2], data: [1, 2, 3]))
        assertOneLineError(try IDXArray.read(trailing), contains: ["trailing", "1 trailing bytes"])

        assertOneLineError(try IDXArray.read(dir.appendingPathComponent("missing.gz")), contains: ["missing.gz", "no such file"])

        // A gzip stream cut short.
        let gz = dir.appendingPathComponent("cut.gz")
        try writeGzip(idxBytes(dims: [500], data: (0..<500).map { UInt8(truncatingIfNeeded: $0 &* 37) }), to: gz)
        let full = try Data(contentsOf: gz)
        try full.prefix(full.count / 2).write(to: gz)
        assertOneLineError(try IDXArray.read(gz), contains: ["cut.gz"])

        // Image/label pairs.
        let images = try file("imgs", idxBytes(dims: [3, 2, 2], data: [UInt8](repeating: 7, count: 12)))
        let twoLabels = try file("two-labels", idxBytes(dims: [2], data: [0, 1]))
        assertOneLineError(try ImageDataset.loadIDX(images: images, labels: twoLabels, numClasses: 10, name: "t"),
                           contains: ["two-labels", "2 labels", "3 images"])
        let bigLabel = try file("big-label", idxBytes(dims: [3], data: [0, 10, 1]))
        assertOneLineError(try ImageDataset.loadIDX(images: images, labels: bigLabel, numClasses: 10, name: "t"),
                           contains: ["big-label", "label 10 at index 1", "10 classes"])
        let flat = try file("flat", idxBytes(dims: [12], data: [UInt8](repeating: 7, count: 12)))
        assertOneLineError(try ImageDataset.loadIDX(images: flat, labels: bigLabel, numClasses: 10, name: "t"),
                           contains: ["flat", "3-dimensional"])
        let ok = try file("ok-labels", idxBytes(dims: [3], data: [2, 0, 1]))
        let d = try ImageDataset.loadIDX(images: images, labels: ok, numClasses: 3, name: "t")
        XCTAssertEqual(d.labels, [2, 0, 1])
        XCTAssertEqual([d.count, d.channels, d.height, d.width], [3, 1, 2, 2])
    }

    func testDatasetInitValidates() {
        assertOneLineError(try ImageDataset(name: "d", channels: 1, height: 2, width: 2, numClasses: 2,
                                            pixels: [0, 0, 0], labels: [0]), contains: ["d:", "3 pixel bytes"])
        assertOneLineError(try ImageDataset(name: "d", channels: 1, height: 1, width: 1, numClasses: 2,
                                            pixels: [0], labels: [-1]), contains: ["label -1"])
    }

    private func writeGzip(_ bytes: [UInt8], to url: URL) throws {
        try IDXArray.writeFile(bytes, to: url, gzip: true)
    }
}
