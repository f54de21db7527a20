import Foundation
import XCTest
@testable import DaftData

final class DomainGalleryTests: XCTestCase {
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
        let test = try DataCatalog.fashionMNIST(test: true)
        let picks = (0..<8).map { c in test.labels.firstIndex(of: Int32(c))! }
        let expected = DomainGallery.render(dataset: test, sampleIndices: picks, domains: FashionShift.domains)
        for url in targets {
            try DomainGallery.writeFashionShift(to: url)
            let size = try FileManager.default.attributesOfItem(atPath: url.path)[.size] as! Int
            XCTAssertLessThan(size, 300_000)
            XCTAssertGreaterThan(size, 1_000)
            let png = try ImageCodec.decode(contentsOf: url)
            XCTAssertEqual([png.width, png.height, png.channels], [expected.width, expected.height, 1])
            XCTAssertEqual(png.pixels, expected.pixels)
        }
    }
}
