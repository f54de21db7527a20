import DaftInterop
import Foundation
import XCTest

/// Locates committed fixtures and scratch folders for the interop tests.
enum InteropFixtures {
    /// `Tests/Fixtures/interop`, found by walking up from this source file to the `Tests` folder.
    static var folder: URL {
        var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while url.lastPathComponent != "Tests" && url.path != "/" {
            url = url.deletingLastPathComponent()
        }
        return url.appendingPathComponent("Fixtures").appendingPathComponent("interop")
    }

    /// A committed fixture file.
    static func url(_ name: String) -> URL { folder.appendingPathComponent(name) }

    /// True when the golden Swift-written files should be rewritten instead of compared.
    static var recordGolden: Bool { ProcessInfo.processInfo.environment["DAFT_INTEROP_RECORD_GOLDEN"] == "1" }
}

/// A fresh temporary folder, removed when the test ends.
func makeTemporaryFolder(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("daft-interop-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// Asserts `body` throws an `InteropError` whose one-line message contains every fragment.
func assertInteropError(_ fragments: [String], file: StaticString = #filePath, line: UInt = #line,
                        _ body: () throws -> Void) {
    do {
        try body()
        XCTFail("expected an InteropError containing \(fragments)", file: file, line: line)
    } catch let error as InteropError {
        XCTAssertFalse(error.description.contains("\n"), "message is not one line: \(error)", file: file, line: line)
        XCTAssertEqual(error.description, error.message, file: file, line: line)
        for fragment in fragments {
            XCTAssertTrue(error.message.contains(fragment), "'\(error.message)' lacks '\(fragment)'",
                          file: file, line: line)
        }
    } catch {
        XCTFail("expected an InteropError, got \(error)", file: file, line: line)
    }
}

/// Little-endian bytes of a UInt64.
func le64(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

/// A safetensors file from a raw header text and data buffer (no padding, no validation).
func rawSafetensors(_ header: String, _ buffer: [UInt8]) -> [UInt8] {
    let headerBytes = Array(header.utf8)
    return le64(UInt64(headerBytes.count)) + headerBytes + buffer
}
