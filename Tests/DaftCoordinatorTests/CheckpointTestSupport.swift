import Foundation
import XCTest
@testable import DaftCoordinator

/// Deterministic bytes for checkpoint tests (SplitMix64 stream).
func checkpointTestBytes(count: Int, seed: UInt64) -> [UInt8] {
    var state = seed &+ 0x9E37_79B9_7F4A_7C15
    var out = [UInt8]()
    out.reserveCapacity(count + 8)
    while out.count < count {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        withUnsafeBytes(of: z.littleEndian) { out.append(contentsOf: $0) }
    }
    out.removeLast(out.count - count)
    return out
}

/// A fresh temporary directory, removed by the returned cleanup.
func makeCheckpointTempDir(_ label: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("daft-\(label)-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Names and contents of every regular file under `dir` (recursively), for "nothing changed" checks.
func snapshotTree(_ dir: URL) -> [String: [UInt8]] {
    var result: [String: [UInt8]] = [:]
    guard let enumerator = FileManager.default.enumerator(atPath: dir.path) else { return result }
    while let relative = enumerator.nextObject() as? String {
        let path = dir.appendingPathComponent(relative).path
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue {
            result[relative] = (try? Data(contentsOf: URL(fileURLWithPath: path))).map { Array($0) } ?? []
        }
    }
    return result
}
