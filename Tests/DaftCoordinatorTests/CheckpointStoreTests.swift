import Foundation
import XCTest
@testable import DaftCoordinator

final class CheckpointStoreTests: XCTestCase {
    private var root: URL!

    override func setUpWithError() throws {
        root = try makeCheckpointTempDir("ckpt")
    }

    override func tearDownWithError() throws {
        if let root { try? FileManager.default.removeItem(at: root) }
    }

    private func files(step: Int, size: Int = 4096) -> [String: [UInt8]] {
        [
            "weights.safetensors": checkpointTestBytes(count: size, seed: UInt64(step)),
            "trainer.json": Array("{\"step\":\(step)}".utf8),
        ]
    }

    private func dirNames() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).sorted()
    }

    // MARK: round trip

    func testDirectoryNames() {
        XCTAssertEqual(CheckpointStore.directoryName(step: 0), "ckpt-000000000")
        XCTAssertEqual(CheckpointStore.directoryName(step: 1200), "ckpt-000001200")
        XCTAssertEqual(CheckpointStore.directoryName(step: 12_345_678_901), "ckpt-12345678901")
        XCTAssertEqual(CheckpointStore.step(fromDirectoryName: "ckpt-000001200"), 1200)
        XCTAssertNil(CheckpointStore.step(fromDirectoryName: "ckpt-12a"))
        XCTAssertNil(CheckpointStore.step(fromDirectoryName: ".ckpt-000000001.staging-3"))
    }

    func testWriteReadRoundTrip() throws {
        let store = CheckpointStore(root: root.appendingPathComponent("nested/out"), keep: 3)
        let contents = files(step: 100, size: 100_003)
        let url = try store.write(step: 100, files: contents, info: ["arch": "resnet20", "method": "daft"],
                                  isBest: true, metric: 0.8125)
        XCTAssertEqual(url.lastPathComponent, "ckpt-000000100")

        let info = try store.validate(url)
        XCTAssertEqual(info.step, 100)
        XCTAssertEqual(info.info, ["arch": "resnet20", "method": "daft"])
        XCTAssertTrue(info.isBest)
        XCTAssertEqual(info.metric, 0.8125)
        XCTAssertEqual(Set(info.files.keys), ["weights.safetensors", "trainer.json"])
        XCTAssertEqual(info.files["weights.safetensors"], CheckpointFile(size: 100_003,
                                                                           sha256: Checksum.sha256Hex(of: contents["weights.safetensors"]!)))
        XCTAssertLessThan(abs(info.created.timeIntervalSinceNow), 120)
        for (name, bytes) in contents { XCTAssertEqual(try info.read(name), bytes) }
        XCTAssertThrowsError(try info.read("nope.bin"))

        var reports: [String] = []
        XCTAssertEqual(store.latestValid { reports.append($0) }, info)
        XCTAssertEqual(reports, [])
        XCTAssertEqual(store.validCheckpoints().map(\.step), [100])
        XCTAssertEqual(store.best()?.step, 100)

        // Only the checkpoint and its manifest are left behind: no temporary files.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: url.path).sorted(),
                       ["manifest.json", "trainer.json", "weights.safetensors"])

        // The manifest format.
        let manifestData = try Data(contentsOf: url.appendingPathComponent("manifest.json"))
        let manifest = try XCTUnwrap(JSONSerialization.jsonObject(with: manifestData) as? [String: Any])
        XCTAssertEqual(manifest["format"] as? String, "daft-checkpoint")
        XCTAssertEqual(manifest["format_version"] as? Int, 1)
        XCTAssertEqual(manifest["step"] as? Int, 100)
        XCTAssertEqual(manifest["is_best"] as? Bool, true)
        XCTAssertEqual(manifest["metric"] as? Double, 0.8125)
        XCTAssertNotNil(manifest["created"] as? String)
        XCTAssertEqual(manifest["info"] as? [String: String], ["arch": "resnet20", "method": "daft"])
        let weights = try XCTUnwrap((manifest["files"] as? [String: Any])?["weights.safetensors"] as? [String: Any])
        XCTAssertEqual(weights["size"] as? Int, 100_003)
        XCTAssertEqual(weights["sha256"] as? String, Checksum.sha256Hex(of: contents["weights.safetensors"]!))

        let summary = try CheckpointStore.describe(url)
        XCTAssertTrue(summary.contains("step:    100"), summary)
        XCTAssertTrue(summary.contains("weights.safetensors"), summary)
        XCTAssertTrue(summary.contains("100003 bytes"), summary)
        XCTAssertTrue(summary.contains("arch = resnet20"), summary)
        XCTAssertTrue(summary.contains("status:  valid"), summary)
    }

    func testNilAndNonFiniteMetricStoredAsNull() throws {
        let store = CheckpointStore(root: root, keep: 5)
        let a = try store.write(step: 1, files: files(step: 1), info: [:], isBest: false, metric: nil)
        let b = try store.write(step: 2, files: files(step: 2), info: [:], isBest: true, metric: .nan)
        XCTAssertNil(try store.validate(a).metric)
        XCTAssertNil(try store.validate(b).metric)
        let raw = try String(contentsOf: b.appendingPathComponent("manifest.json"), encoding: .utf8)
        XCTAssertTrue(raw.contains("\"metric\" : null"), raw)
    }

    func testRejectsInvalidFileNamesAndSteps() {
        let store = CheckpointStore(root: root, keep: 2)
        for name in ["manifest.json", ".hidden", "a/b", ""] {
            XCTAssertThrowsError(try store.write(step: 1, files: [name: [1]], info: [:], isBest: false, metric: nil)) {
                XCTAssertEqual($0 as? CheckpointError, .invalidFileName(name))
            }
        }
        XCTAssertThrowsError(try store.write(step: -1, files: [:], info: [:], isBest: false, metric: nil))
        XCTAssertEqual(dirNames().filter { $0.hasPrefix("ckpt-") }, [])
    }

    func testRewritingAStepReplacesItAtomically() throws {
        let store = CheckpointStore(root: root, keep: 2)
        try store.write(step: 100, files: ["w.bin": [1, 2, 3]], info: ["gen": "1"], isBest: false, metric: nil)
        let url = try store.write(step: 100, files: ["w.bin": [4, 5, 6, 7], "extra.bin": [9]], info: ["gen": "2"],
                                  isBest: false, metric: nil)
        let info = try store.validate(url)
        XCTAssertEqual(info.info["gen"], "2")
        XCTAssertEqual(try info.read("w.bin"), [4, 5, 6, 7])
        XCTAssertEqual(try info.read("extra.bin"), [9])
        XCTAssertEqual(dirNames(), ["ckpt-000000100"], "no staging or trash directories left")
    }

    // MARK: retention

    func testRetentionKeepsNewestKPlusBest() throws {
        let store = CheckpointStore(root: root, keep: 2)
        try store.write(step: 1, files: files(step: 1), info: [:], isBest: true, metric: 0.5)
        try store.write(step: 2, files: files(step: 2), info: [:], isBest: false, metric: 0.3)
        try store.write(step: 3, files: files(step: 3), info: [:], isBest: false, metric: 0.4)
        XCTAssertEqual(dirNames(), ["ckpt-000000001", "ckpt-000000002", "ckpt-000000003"])
        try store.write(step: 4, files: files(step: 4), info: [:], isBest: false, metric: 0.2)
        XCTAssertEqual(dirNames(), ["ckpt-000000001", "ckpt-000000003", "ckpt-000000004"])
        // Marked best but with a lower metric: step 1 stays the best.
        try store.write(step: 5, files: files(step: 5), info: [:], isBest: true, metric: 0.45)
        XCTAssertEqual(dirNames(), ["ckpt-000000001", "ckpt-000000004", "ckpt-000000005"])
        try store.write(step: 6, files: files(step: 6), info: [:], isBest: false, metric: nil)
        XCTAssertEqual(dirNames(), ["ckpt-000000001", "ckpt-000000005", "ckpt-000000006"])
        XCTAssertEqual(store.best()?.step, 1)
        // A better best replaces it; the previous best is no longer kept.
        try store.write(step: 7, files: files(step: 7), info: [:], isBest: true, metric: 0.9)
        XCTAssertEqual(dirNames(), ["ckpt-000000006", "ckpt-000000007"])
        XCTAssertEqual(store.best()?.step, 7)
        try store.write(step: 8, files: files(step: 8), info: [:], isBest: false, metric: nil)
        try store.write(step: 9, files: files(step: 9), info: [:], isBest: false, metric: nil)
        XCTAssertEqual(dirNames(), ["ckpt-000000007", "ckpt-000000008", "ckpt-000000009"])
        XCTAssertEqual(store.validCheckpoints().map(\.step), [7, 8, 9])
    }

    func testKeepOneWithoutBest() throws {
        let store = CheckpointStore(root: root, keep: 0) // counts as 1
        XCTAssertEqual(store.keep, 1)
        for step in 1...4 { try store.write(step: step, files: files(step: step), info: [:], isBest: false, metric: nil) }
        XCTAssertEqual(dirNames(), ["ckpt-000000004"])
    }

    func testJustWrittenCheckpointIsNeverDeletedByRetention() throws {
        let store = CheckpointStore(root: root, keep: 2)
        for step in [100, 200, 300] {
            try store.write(step: step, files: files(step: step), info: [:], isBest: false, metric: nil)
        }
        // Writing an older step (e.g. after `--resume DIR` from an earlier checkpoint) keeps the new one.
        try store.write(step: 150, files: files(step: 150), info: [:], isBest: false, metric: nil)
        XCTAssertTrue(dirNames().contains("ckpt-000000150"))
        XCTAssertNoThrow(try store.validate(store.directory(step: 150)))
    }

    // MARK: fault injection

    private enum Fault: CaseIterable {
        case truncated, longer, flippedByte, missingManifest, badJSONManifest, manifestWrongShape, missingFile
    }

    private func inject(_ fault: Fault, into dir: URL) throws {
        let weights = dir.appendingPathComponent("weights.safetensors")
        let manifest = dir.appendingPathComponent("manifest.json")
        switch fault {
        case .truncated:
            let bytes = try Data(contentsOf: weights)
            try bytes.prefix(bytes.count / 2).write(to: weights)
        case .longer:
            var bytes = try Data(contentsOf: weights)
            bytes.append(0)
            try bytes.write(to: weights)
        case .flippedByte:
            var bytes = [UInt8](try Data(contentsOf: weights))
            bytes[bytes.count / 3] ^= 0x10
            try Data(bytes).write(to: weights)
        case .missingManifest:
            try FileManager.default.removeItem(at: manifest)
        case .badJSONManifest:
            let text = try String(contentsOf: manifest, encoding: .utf8)
            try String(text.dropLast(20)).write(to: manifest, atomically: false, encoding: .utf8)
        case .manifestWrongShape:
            try #"{"format": "daft-checkpoint", "format_version": 1, "step": "two hundred"}"#
                .write(to: manifest, atomically: false, encoding: .utf8)
        case .missingFile:
            try FileManager.default.removeItem(at: weights)
        }
    }

    private func expectedPhrase(_ fault: Fault) -> String {
        switch fault {
        case .truncated: return "file weights.safetensors is truncated"
        case .longer: return "size mismatch for weights.safetensors"
        case .flippedByte: return "checksum mismatch for weights.safetensors"
        case .missingManifest: return "missing manifest.json"
        case .badJSONManifest: return "unreadable manifest.json: not valid JSON"
        case .manifestWrongShape: return "unreadable manifest.json: field 'step' has the wrong type"
        case .missingFile: return "missing file weights.safetensors"
        }
    }

    func testFaultsAreReportedOnOneLineAndFallBackWithoutDeleting() throws {
        for fault in Fault.allCases {
            let faultRoot = root.appendingPathComponent("\(fault)")
            let store = CheckpointStore(root: faultRoot, keep: 3)
            try store.write(step: 100, files: files(step: 100), info: ["n": "100"], isBest: false, metric: nil)
            let bad = try store.write(step: 200, files: files(step: 200), info: ["n": "200"], isBest: false, metric: nil)
            try inject(fault, into: bad)
            let before = snapshotTree(faultRoot)

            var reports: [String] = []
            let latest = store.latestValid { reports.append($0) }
            XCTAssertEqual(latest?.step, 100, "\(fault)")
            XCTAssertEqual(latest?.info["n"], "100")
            XCTAssertEqual(reports.count, 1, "\(fault): \(reports)")
            let line = reports.first ?? ""
            XCTAssertFalse(line.contains("\n"), "\(fault): \(line)")
            XCTAssertTrue(line.contains(bad.path), "\(fault): \(line)")
            XCTAssertTrue(line.contains(expectedPhrase(fault)), "\(fault): \(line)")

            XCTAssertThrowsError(try store.validate(bad), "\(fault)") { error in
                XCTAssertEqual(String(describing: error), line)
            }
            XCTAssertEqual(store.validCheckpoints().map(\.step), [100], "\(fault)")
            XCTAssertEqual(snapshotTree(faultRoot), before, "\(fault): validation must not change anything")

            if fault == .missingManifest || fault == .badJSONManifest {
                XCTAssertThrowsError(try CheckpointStore.describe(bad))
            } else if fault != .manifestWrongShape {
                XCTAssertTrue(try CheckpointStore.describe(bad).contains("status:  INVALID: \(line)"), "\(fault)")
            }
        }
    }

    func testReadReverifiesChecksum() throws {
        let store = CheckpointStore(root: root, keep: 2)
        let url = try store.write(step: 5, files: files(step: 5), info: [:], isBest: false, metric: nil)
        let info = try store.validate(url)
        try inject(.flippedByte, into: url)
        XCTAssertThrowsError(try info.read("weights.safetensors")) { error in
            guard case .checksumMismatch(let dir, let file, _, _)? = error as? CheckpointError else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(dir, url.path)
            XCTAssertEqual(file, "weights.safetensors")
        }
        XCTAssertEqual(try info.read("trainer.json"), files(step: 5)["trainer.json"])
    }

    func testNoCheckpointsAtAll() {
        let store = CheckpointStore(root: root.appendingPathComponent("missing"), keep: 2)
        var reports: [String] = []
        XCTAssertNil(store.latestValid { reports.append($0) })
        XCTAssertEqual(reports, [])
        XCTAssertEqual(store.validCheckpoints(), [])
        XCTAssertNil(store.best())
        XCTAssertThrowsError(try store.validate(root.appendingPathComponent("missing/ckpt-000000001"))) {
            XCTAssertTrue(String(describing: $0).contains("not a directory"))
        }
    }

    // MARK: interrupted writes

    func testPartialCheckpointIsIgnoredThenCleanedByNextWrite() throws {
        let store = CheckpointStore(root: root, keep: 3)
        try store.write(step: 100, files: files(step: 100), info: [:], isBest: false, metric: nil)
        // A writer killed after the files but before the manifest.
        let partial = store.directory(step: 200)
        try FileManager.default.createDirectory(at: partial, withIntermediateDirectories: false)
        try Data(files(step: 200)["weights.safetensors"]!).write(to: partial.appendingPathComponent("weights.safetensors"))
        try Data([1, 2, 3]).write(to: partial.appendingPathComponent(".manifest.json.tmp"))
        // ...and leftovers of an interrupted replacement and deletion.
        let staging = root.appendingPathComponent(".ckpt-000000100.staging-999")
        let trash = root.appendingPathComponent(".ckpt-trash-ckpt-000000050-999-1")
        for dir in [staging, trash] {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false)
            try Data([0]).write(to: dir.appendingPathComponent("manifest.json"))
        }

        var reports: [String] = []
        XCTAssertEqual(store.latestValid { reports.append($0) }?.step, 100)
        XCTAssertEqual(reports, ["checkpoint \(partial.path): missing manifest.json (incomplete checkpoint)"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: partial.path), "validation deletes nothing")

        try store.write(step: 300, files: files(step: 300), info: [:], isBest: false, metric: nil)
        XCTAssertEqual(dirNames(), ["ckpt-000000100", "ckpt-000000300"])
        reports = []
        XCTAssertEqual(store.latestValid { reports.append($0) }?.step, 300)
        XCTAssertEqual(reports, [])
    }

    func testPartialDirectoryOfTheSameStepIsReplaced() throws {
        let store = CheckpointStore(root: root, keep: 3)
        let partial = store.directory(step: 7)
        try FileManager.default.createDirectory(at: partial, withIntermediateDirectories: true)
        try Data([9, 9, 9]).write(to: partial.appendingPathComponent("stale.bin"))
        let url = try store.write(step: 7, files: files(step: 7), info: [:], isBest: false, metric: nil)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: url.path).sorted(),
                       ["manifest.json", "trainer.json", "weights.safetensors"])
        XCTAssertEqual(try store.validate(url).step, 7)
    }

    func testNewerPartialIsKeptUntilItsStepIsWritten() throws {
        let store = CheckpointStore(root: root, keep: 3)
        try store.write(step: 100, files: files(step: 100), info: [:], isBest: false, metric: nil)
        let partial = store.directory(step: 300)
        try FileManager.default.createDirectory(at: partial, withIntermediateDirectories: false)
        try store.write(step: 200, files: files(step: 200), info: [:], isBest: false, metric: nil)
        XCTAssertTrue(FileManager.default.fileExists(atPath: partial.path))
        try store.write(step: 300, files: files(step: 300), info: [:], isBest: false, metric: nil)
        XCTAssertEqual(store.validCheckpoints().map(\.step), [100, 200, 300])
    }

    func testManifestStepMustMatchDirectory() throws {
        let store = CheckpointStore(root: root, keep: 3)
        let url = try store.write(step: 10, files: files(step: 10), info: [:], isBest: false, metric: nil)
        let renamed = store.directory(step: 20)
        try FileManager.default.moveItem(at: url, to: renamed)
        XCTAssertThrowsError(try store.validate(renamed)) {
            XCTAssertTrue(String(describing: $0).contains("does not match the directory name"), "\($0)")
        }
    }
}
