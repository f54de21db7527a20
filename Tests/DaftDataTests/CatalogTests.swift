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

    /// NaN and ±inf in float images are one-line errors naming the file, the image and the element inside it,
    /// raised while loading (before any step); so are finite values outside [0, 1], float64 ones beyond Float's
    /// range reported as themselves.
    func testNonFiniteFloatImagesAreOneLineErrorsNamingTheImage() throws {
        let dir = try makeTempDir(self)
        let x = dir.appendingPathComponent("x.npy"), y = dir.appendingPathComponent("y.npy")
        try NpyArray(int64s: [0, 1, 2], shape: [3]).write(to: y)
        var values = [Float](repeating: 0.5, count: 3 * 2 * 2 * 2)   // 3 images of 2×2×2
        values[8 + 5] = .nan
        try NpyArray(floats: values, shape: [3, 2, 2, 2]).write(to: x)
        assertOneLineError(try ImageDataset.loadNPY(x: x, y: y), contains: [x.path, "nan", "image 1, element 5 (flat index 13)", "not finite"])
        values[8 + 5] = 0.5
        values[16] = -.infinity
        try NpyArray(floats: values, shape: [3, 2, 2, 2]).write(to: x)
        assertOneLineError(try ImageDataset.loadNPY(x: x, y: y), contains: [x.path, "-inf", "image 2, element 0", "not finite"])
        var doubles = [Double](repeating: 0.25, count: 3 * 4)         // 3 images of 2×2 (N×H×W)
        doubles[3] = .infinity
        try NpyArray(doubles: doubles, shape: [3, 2, 2]).write(to: x)
        assertOneLineError(try ImageDataset.loadNPY(x: x, y: y), contains: [x.path, "inf", "image 0, element 3", "not finite"])
        doubles[3] = 1e300
        try NpyArray(doubles: doubles, shape: [3, 2, 2]).write(to: x)
        assertOneLineError(try ImageDataset.loadNPY(x: x, y: y), contains: [x.path, "1e+300", "image 0, element 3", "outside [0, 1]"])
        doubles[3] = 1
        try NpyArray(doubles: doubles, shape: [3, 2, 2]).write(to: x)
        XCTAssertEqual(try ImageDataset.loadNPY(x: x, y: y).pixels, doubles.map { $0 == 1 ? 255 : 64 })
    }

    /// A label the model head does not have is a one-line error naming the data set and the sample's index.
    func testLabelsOutsideTheHeadNameTheIndex() throws {
        let d = try ImageDataset(name: "npy:/d/x.npy,/d/y.npy", channels: 1, height: 1, width: 1, numClasses: 10,
                                 pixels: [0, 0, 0, 0], labels: [3, 4, 9, 7])
        try d.checkLabels(fitHeadOf: 10, head: "the head of the model")
        assertOneLineError(try d.checkLabels(fitHeadOf: 5, head: "the head of the model"),
                           contains: ["/d/y.npy", "label 9 at index 2", "the head of the model, which has 5 classes (0...4)"])
        assertOneLineError(try d.checkLabels(fitHeadOf: 9, head: "the head"), contains: ["label 9 at index 2"])
        try d.checkLabels(fitHeadOf: 10, head: "the head")
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
