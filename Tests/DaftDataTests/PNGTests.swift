import Foundation
import XCTest
@testable import DaftData

final class PNGTests: XCTestCase {
    func testPNGStructure() throws {
        let png = try PNGWriter.encode(width: 3, height: 2, channels: 1, pixels: [0, 128, 255, 1, 2, 3])
        XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        XCTAssertEqual(String(decoding: png[12..<16], as: UTF8.self), "IHDR")
        XCTAssertEqual(Array(png[16..<24]), [0, 0, 0, 3, 0, 0, 0, 2])
        XCTAssertEqual(png[24], 8); XCTAssertEqual(png[25], 0)
        // CRC of IHDR (type + 13 data bytes), checked against a bitwise CRC-32.
        let ihdr = Array(png[12..<29])
        let crc = UInt32(png[29]) << 24 | UInt32(png[30]) << 16 | UInt32(png[31]) << 8 | UInt32(png[32])
        XCTAssertEqual(crc, bitwiseCRC32(ihdr))
        XCTAssertEqual(String(decoding: png.suffix(8).prefix(4), as: UTF8.self), "IEND")
        let rgb = try PNGWriter.encode(width: 1, height: 1, channels: 3, pixels: [1, 2, 3])
        XCTAssertEqual(rgb[25], 2)
        assertOneLineError(try PNGWriter.encode(width: 2, height: 2, channels: 1, pixels: [0]), contains: ["PNG"])
    }

    func testGalleryLayout() {
        let data = syntheticDataset(count: 3, size: 16)
        let g = DomainGallery.render(dataset: data, sampleIndices: [0, 2], domains: [.clean, FashionShift.id], scale: 2, gap: 2)
        XCTAssertEqual(g.width, 2 * 32 + 3 * 2)
        XCTAssertEqual(g.height, 2 * 32 + 3 * 2)
        // Top-left cell is image 0 scaled ×2.
        let img = Array(data.image(at: 0))
        for y in 0..<32 { for x in 0..<32 { XCTAssertEqual(g.pixels[(2 + y) * g.width + 2 + x], img[(y / 2) * 16 + x / 2]) } }
    }

    /// Writes the gallery to a temporary file, and to docs/images/fashion-shift-domains.png when
    /// DAFT_WRITE_DOCS_IMAGES=1 (how the committed picture is regenerated).
    func testFashionShiftGallery() throws {
        try XCTSkipUnless(fashionMNISTAvailable, "Fashion-MNIST not installed")
        let dir = try makeTempDir(self)
        var targets = [dir.appendingPathComponent("fashion-shift-domains.png")]
        if ProcessInfo.processInfo.environment["DAFT_WRITE_DOCS_IMAGES"] == "1" {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            targets.append(root.appendingPathComponent("docs/images/fashion-shift-domains.png"))
        }
        for url in targets {
            try DomainGallery.writeFashionShift(to: url)
            let size = try FileManager.default.attributesOfItem(atPath: url.path)[.size] as! Int
            XCTAssertLessThan(size, 300_000)
            XCTAssertGreaterThan(size, 1_000)
        }
    }

    private func bitwiseCRC32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
        }
        return c ^ 0xFFFF_FFFF
    }
}
