import Foundation
import XCTest
@testable import DaftData

/// A fresh temporary directory, removed when the test ends.
func makeTempDir(_ test: XCTestCase) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("daft-data-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
    return dir
}

/// The bytes of an IDX file with unsigned-byte elements.
func idxBytes(dims: [Int], data: [UInt8], magicType: UInt8 = 0x08) -> [UInt8] {
    var b: [UInt8] = [0, 0, magicType, UInt8(dims.count)]
    for d in dims { b += [UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF)] }
    return b + data
}

/// Whether the Fashion-MNIST files are present in the default directory.
var fashionMNISTAvailable: Bool {
    FileManager.default.fileExists(atPath: DataCatalog.defaultFashionMNISTDirectory
        .appendingPathComponent("train-labels-idx1-ubyte.gz").path)
}

/// A small synthetic one-channel dataset (a bright square on black, its position depending on i).
func syntheticDataset(count: Int = 12, size: Int = 16, classes: Int = 3) -> ImageDataset {
    var px = [UInt8](repeating: 0, count: count * size * size)
    for i in 0..<count {
        let o = i * size * size, x0 = (2 + i % 5) % size, y0 = (3 + i % 4) % size
        for y in y0 ..< min(size, y0 + 7) { for x in x0 ..< min(size, x0 + 6) { px[o + y * size + x] = UInt8(150 + 7 * i % 100) } }
    }
    return try! ImageDataset(name: "synthetic", channels: 1, height: size, width: size, numClasses: classes,
                             pixels: px, labels: (0..<count).map { Int32($0 % classes) })
}

/// Asserts `body` throws an error whose description is one line and contains every fragment.
func assertOneLineError(_ body: @autoclosure () throws -> Any, contains fragments: [String],
                        file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try body()
        XCTFail("expected an error", file: file, line: line)
    } catch {
        let text = "\(error)"
        XCTAssertFalse(text.contains("\n"), "error is not one line: \(text)", file: file, line: line)
        for f in fragments {
            XCTAssertTrue(text.contains(f), "error '\(text)' does not contain '\(f)'", file: file, line: line)
        }
    }
}

/// The bytes of a file.
func fileBytes(_ url: URL) throws -> [UInt8] { [UInt8](try Data(contentsOf: url)) }

/// max |a[i] − b[i]| over two byte arrays, or Int.max when their lengths differ.
func maxAbsDifference(_ a: [UInt8], _ b: [UInt8]) -> Int {
    guard a.count == b.count else { return Int.max }
    var worst = 0
    for i in 0..<a.count { worst = max(worst, abs(Int(a[i]) - Int(b[i]))) }
    return worst
}

/// A random 8-bit image (SplitMix64 from `seed`) of the given size.
func randomImage(width: Int, height: Int, channels: Int, seed: UInt64) -> DecodedImage {
    var rng = SplitMix64(seed: seed)
    let px = (0..<(width * height * channels)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    return try! DecodedImage(width: width, height: height, channels: channels, pixels: px)
}
