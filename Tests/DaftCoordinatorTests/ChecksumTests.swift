import Foundation
import XCTest
@testable import DaftCoordinator

/// `Checksum` (swift-crypto's SHA-256 behind the hex form manifests store and the chunked file reader).
final class ChecksumTests: XCTestCase {
    private func hex(_ text: String) -> String { Checksum.sha256Hex(of: Array(text.utf8)) }

    func testNISTVectors() {
        // FIPS 180-4 examples / NIST CAVP short and long messages.
        XCTAssertEqual(hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
        XCTAssertEqual(Checksum.sha256Hex(of: [UInt8](repeating: 0x61, count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// The file reader's chunking (1 byte, around the 64-byte block, odd sizes, the default 1 MiB) never
    /// changes the digest, and it reports the bytes it read.
    func testFileHashMatchesSha256sumForEveryChunkSize() throws {
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
        XCTAssertEqual(reference.count, 64, output)

        XCTAssertEqual(Checksum.sha256Hex(of: bytes), reference)
        for chunk in [1 << 20, 63, 64, 65, 1000, 4097] {
            let result = try Checksum.sha256OfFile(at: file, chunkSize: chunk)
            XCTAssertEqual(result.hex, reference, "chunk size \(chunk)")
            XCTAssertEqual(result.size, size, "chunk size \(chunk)")
        }
        let small = dir.appendingPathComponent("small.bin")
        try Data("abc".utf8).write(to: small)
        let one = try Checksum.sha256OfFile(at: small, chunkSize: 1)
        XCTAssertEqual(one.hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(one.size, 3)
    }

    func testMissingFileThrows() {
        XCTAssertThrowsError(try Checksum.sha256OfFile(at: URL(fileURLWithPath: "/nonexistent/daft/file"))) { error in
            XCTAssertEqual(String(describing: error), "cannot read /nonexistent/daft/file: No such file or directory")
        }
    }
}
