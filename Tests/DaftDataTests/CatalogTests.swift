import DaftInterop
import Foundation
import XCTest
@testable import DaftData

final class CatalogTests: XCTestCase {
    func testParsing() throws {
        XCTAssertEqual(try DataSpec.parse("fashion-mnist:test"), .fashionMNIST(split: .test, domain: "clean"))
        XCTAssertEqual(try DataSpec.parse("fashion-mnist:target-train@id"), .fashionMNIST(split: .targetTrain, domain: "id"))
        XCTAssertEqual(try DataSpec.parse("npy:a/x.npy,b/y.npy"), .npy(x: "a/x.npy", y: "b/y.npy", domain: "clean"))
        XCTAssertEqual(try DataSpec.parse("npy:x@2.npy,y.npy"), .npy(x: "x@2.npy", y: "y.npy", domain: "clean"))
        XCTAssertEqual(try DataSpec.parse("npy:x.npy,y.npy@blur"), .npy(x: "x.npy", y: "y.npy", domain: "blur"))
        XCTAssertEqual(try DataSpec.parse("idx:i.gz,l.gz"), .idx(images: "i.gz", labels: "l.gz", domain: "clean"))
        XCTAssertEqual(try DataSpec.parse("fashion-mnist:test@rotate").description, "fashion-mnist:test@rotate")
        assertOneLineError(try DataSpec.parse("fashion-mnist:tset"),
                           contains: ["unknown Fashion-MNIST split 'tset'", "train, test, source, target-train, target-val"])
        assertOneLineError(try DataSpec.parse("fashion-mnist:test@fog"), contains: ["unknown domain 'fog'", "clean, id, rotate"])
        assertOneLineError(try DataSpec.parse("cifar:test"), contains: ["unknown scheme 'cifar'", "fashion-mnist, npy, idx"])
        assertOneLineError(try DataSpec.parse("test"), contains: ["expected SCHEME:"])
        assertOneLineError(try DataSpec.parse("npy:x.npy"), contains: ["npy:X.npy,Y.npy"])
        assertOneLineError(try loadDataset(spec: "fashion-mnist:val"), contains: ["valid splits"])
    }

    func testNamesListEverySplitAndDomain() {
        for s in FashionMNISTSplit.allCases { XCTAssertTrue(DataCatalog.names.contains("fashion-mnist:\(s.rawValue)")) }
        for d in FashionShift.domains { XCTAssertTrue(DataCatalog.names.contains("@\(d.name)")) }
        XCTAssertEqual(DataCatalog.listing.count, FashionMNISTSplit.allCases.count + FashionShift.domains.count + 3)
    }

    func testSplitsAreDisjointWhereTheyMustBe() {
        let tt = FashionMNISTSplit.targetTrain.range, tv = FashionMNISTSplit.targetVal.range, src = FashionMNISTSplit.source.range
        XCTAssertFalse(tt.overlaps(tv)); XCTAssertFalse(tt.overlaps(src)); XCTAssertFalse(tv.overlaps(src))
        XCTAssertEqual(src, 0 ..< 50_000)
    }

    func testLoadingNamedSplitsAndDomains() throws {
        try XCTSkipUnless(fashionMNISTAvailable, "Fashion-MNIST not installed")
        let train = try DataCatalog.fashionMNIST(test: false)
        let tt = try loadDataset(spec: "fashion-mnist:target-train")
        XCTAssertEqual(tt.count, 4_000)
        XCTAssertEqual(tt.pixels, train.subset(50_000 ..< 54_000).pixels)
        XCTAssertEqual(tt.name, "fashion-mnist:target-train")
        let tv = try loadDataset(spec: "fashion-mnist:target-val@id")
        XCTAssertEqual(tv.count, 2_000)
        XCTAssertEqual(tv.labels, Array(train.labels[56_000 ..< 58_000]))
        // The shift's sample key is the index in the file: target-val image k = train image 56000+k under `id`.
        let img = Array(train.image(at: 56_010))
        XCTAssertEqual(Array(tv.image(at: 10)), FashionShift.id.apply(img, channels: 1, height: 28, width: 28, sampleIndex: 56_010))
        XCTAssertNotEqual(Array(tv.image(at: 10)), img)
        XCTAssertEqual(try loadDataset(spec: "fashion-mnist:test@id").pixels.count, 10_000 * 784)
        XCTAssertEqual(try loadDataset(spec: "fashion-mnist:source").count, 50_000)
    }

    func testDirectoryOverrideAndMissingFiles() throws {
        let dir = try makeTempDir(self)
        assertOneLineError(try DataCatalog.load(.fashionMNIST(split: .test, domain: "clean"), fashionMNISTDirectory: dir),
                           contains: [dir.path, "t10k-images-idx3-ubyte", "no such file"])
        // A tiny stand-in directory with plain (uncompressed) files.
        try IDXArray(dims: [2, 28, 28], bytes: [UInt8](repeating: 9, count: 2 * 784))
            .write(to: dir.appendingPathComponent("t10k-images-idx3-ubyte"), gzip: false)
        try IDXArray(dims: [2], bytes: [3, 4]).write(to: dir.appendingPathComponent("t10k-labels-idx1-ubyte.gz"), gzip: true)
        let raw = try DataCatalog.fashionMNIST(test: true, directory: dir)
        XCTAssertEqual(raw.labels, [3, 4])
        assertOneLineError(try DataCatalog.load(.fashionMNIST(split: .test, domain: "clean"), fashionMNISTDirectory: dir),
                           contains: ["fashion-mnist:test", "10000", "2"])
    }

    func testNPYRoundTripAndFormats() throws {
        let dir = try makeTempDir(self)
        let x = dir.appendingPathComponent("x.npy"), y = dir.appendingPathComponent("y.npy")
        var rgb = syntheticDataset(count: 5, size: 4, classes: 3)
        rgb = try ImageDataset(name: "rgb", channels: 2, height: 4, width: 2, numClasses: 3, pixels: rgb.pixels, labels: rgb.labels)
        try rgb.exportNPY(x: x, y: y)
        let xa = try NpyArray.read(x), ya = try NpyArray.read(y)
        XCTAssertEqual(xa.dtype, .uint8); XCTAssertEqual(xa.shape, [5, 2, 4, 2])
        XCTAssertEqual(ya.dtype, .int64); XCTAssertEqual(ya.shape, [5])
        let back = try loadDataset(spec: "npy:\(x.path),\(y.path)")
        XCTAssertEqual(back.pixels, rgb.pixels)
        XCTAssertEqual(back.labels, rgb.labels)
        XCTAssertEqual([back.channels, back.height, back.width, back.numClasses], [2, 4, 2, 3])

        // N×H×W uint8 with int32 labels.
        try NpyArray(uint8s: [1, 2, 3, 4, 5, 6, 7, 8], shape: [2, 2, 2]).write(to: x)
        try NpyArray(int32s: [1, 0], shape: [2]).write(to: y)
        let hw = try ImageDataset.loadNPY(x: x, y: y)
        XCTAssertEqual([hw.count, hw.channels, hw.height, hw.width, hw.numClasses], [2, 1, 2, 2, 2])
        // float32 in [0, 1].
        try NpyArray(floats: [0, 1, 0.5, 0.2], shape: [1, 1, 2, 2]).write(to: x)
        try NpyArray(int64s: [0], shape: [1]).write(to: y)
        XCTAssertEqual(try ImageDataset.loadNPY(x: x, y: y, numClasses: 10).pixels, [0, 255, 128, 51])
        try NpyArray(floats: [0, 255, 3, 4], shape: [1, 1, 2, 2]).write(to: x)
        assertOneLineError(try ImageDataset.loadNPY(x: x, y: y), contains: ["x.npy", "outside [0, 1]"])
        try NpyArray(uint8s: [1, 2], shape: [2]).write(to: x)
        assertOneLineError(try ImageDataset.loadNPY(x: x, y: y), contains: ["x.npy", "N×C×H×W"])
        try NpyArray(uint8s: [1, 2, 3, 4], shape: [1, 1, 2, 2]).write(to: x)
        try NpyArray(int64s: [0, 1], shape: [2]).write(to: y)
        assertOneLineError(try ImageDataset.loadNPY(x: x, y: y), contains: ["y.npy", "2 labels", "1 images"])
        try NpyArray(int64s: [5], shape: [1]).write(to: y)
        assertOneLineError(try ImageDataset.loadNPY(x: x, y: y, numClasses: 3), contains: ["y.npy", "label 5"])
        try NpyArray(int64s: [-1], shape: [1]).write(to: y)
        assertOneLineError(try ImageDataset.loadNPY(x: x, y: y), contains: ["y.npy", "label -1"])
    }

    func testRealDomainExportRoundTrip() throws {
        try XCTSkipUnless(fashionMNISTAvailable, "Fashion-MNIST not installed")
        let dir = try makeTempDir(self)
        let d = try loadDataset(spec: "fashion-mnist:target-val@scale")
        let x = dir.appendingPathComponent("x.npy"), y = dir.appendingPathComponent("y.npy")
        try d.exportNPY(x: x, y: y)
        let back = try loadDataset(spec: "npy:\(x.path),\(y.path)")
        XCTAssertEqual(back.pixels, d.pixels)
        XCTAssertEqual(back.labels, d.labels)
        XCTAssertEqual(back.numClasses, 10)
    }
}
