import DaftInterop
import Foundation
import XCTest

final class DurableFileTests: XCTestCase {
    func testWritesAndReplacesWithoutLeavingTemporaryFiles() throws {
        let folder = try makeTemporaryFolder(self)
        let url = folder.appendingPathComponent("manifest.json")
        try DurableFile.write(Array("first".utf8), to: url)
        XCTAssertEqual(try Data(contentsOf: url), Data("first".utf8))
        try DurableFile.write(Array("second, longer".utf8), to: url)
        XCTAssertEqual(try Data(contentsOf: url), Data("second, longer".utf8))
        try DurableFile.write([], to: url)
        XCTAssertEqual(try Data(contentsOf: url), Data())
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["manifest.json"])
    }

    func testLargeWrite() throws {
        let folder = try makeTemporaryFolder(self)
        let url = folder.appendingPathComponent("big.bin")
        let bytes = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try DurableFile.write(bytes, to: url)
        XCTAssertEqual(try Data(contentsOf: url), Data(bytes))
    }

    func testErrorsNameThePath() throws {
        let folder = try makeTemporaryFolder(self)
        let url = folder.appendingPathComponent("no-such-folder").appendingPathComponent("f.bin")
        assertInteropError([url.path, "cannot create temporary file", "No such file"]) { try DurableFile.write([1], to: url) }
        // Renaming a file over a non-empty folder fails; the temporary file must be cleaned up.
        let occupied = folder.appendingPathComponent("occupied")
        try FileManager.default.createDirectory(at: occupied, withIntermediateDirectories: false)
        try Data([1]).write(to: occupied.appendingPathComponent("inside"))
        assertInteropError([occupied.path, "cannot rename"]) { try DurableFile.write([1], to: occupied) }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["occupied"])
    }

    func testFsyncDirectory() throws {
        let folder = try makeTemporaryFolder(self)
        try DurableFile.fsyncDirectory(folder)
        let missing = folder.appendingPathComponent("gone")
        assertInteropError([missing.path, "cannot open folder"]) { try DurableFile.fsyncDirectory(missing) }
    }
}
