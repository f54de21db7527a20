import Foundation
import XCTest
@testable import DaftCoordinator

final class SHA256Tests: XCTestCase {
    private func hex(_ text: String) -> String { SHA256.hex(of: Array(text.utf8)) }

    func testNISTVectors() {
        // FIPS 180-4 examples / NIST CAVP short and long messages.
        XCTAssertEqual(hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
    }

    func testOneMillionA() {
        let expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        XCTAssertEqual(SHA256.hex(of: [UInt8](repeating: 0x61, count: 1_000_000)), expected)
        // The same message fed in odd-sized pieces.
        var hasher = SHA256()
        var remaining = 1_000_000
        var piece = 1
        while remaining > 0 {
            let n = min(piece, remaining)
            hasher.update([UInt8](repeating: 0x61, count: n))
            remaining -= n
            piece = piece * 3 % 997 + 1
        }
        XCTAssertEqual(hasher.finalizeHex(), expected)
    }

    func testStreamingMatchesOneShotAtBlockBoundaries() {
        var rng = SystemRandomNumberGenerator()
        for length in [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000] {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let oneShot = SHA256.hex(of: bytes)
            for split in Set([0, length / 3, length / 2, max(0, length - 1), length]) {
                var hasher = SHA256()
                hasher.update(Array(bytes[..<split]))
                let middle = hasher.finalize() // finalize must not disturb the running state
                hasher.update(Array(bytes[split...]))
                XCTAssertEqual(hasher.finalizeHex(), oneShot, "length \(length) split \(split)")
                XCTAssertEqual(SHA256.hexString(middle), SHA256.hex(of: Array(bytes[..<split])))
            }
        }
    }

    func testFileHashMatchesSha256sum() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("daft-sha-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("random.bin")
        let size = 3 * 1024 * 1024 + 12345
        let bytes = checkpointTestBytes(count: size, seed: UInt64.random(in: 0...UInt64.max))
        try Data(bytes).write(to: file)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["sha256sum", file.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        let reference = String(output.prefix(64))

        XCTAssertEqual(try SHA256.hexOfFile(at: file), reference)
        let chunked = try SHA256.hashFile(at: file, chunkSize: 1000)
        XCTAssertEqual(SHA256.hexString(chunked.digest), reference)
        XCTAssertEqual(chunked.size, size)
        XCTAssertEqual(SHA256.hex(of: bytes), reference)
    }

    func testMissingFileThrows() {
        XCTAssertThrowsError(try SHA256.hexOfFile(at: URL(fileURLWithPath: "/nonexistent/daft/file"))) { error in
            XCTAssertTrue(String(describing: error).contains("/nonexistent/daft/file"))
        }
    }
}
