import Foundation
import XCTest
import DaftEngine
import DaftModels
@testable import DaftCoordinator

/// A checkpoint's trainer.json as `--resume` decodes it (Coordinator.decodeSavedTrainer; fuzzed by
/// `launch/fuzz.sh trainer-state`), and the manifest parser on bytes (CheckpointStore.info, `launch/fuzz.sh manifest`).
final class TrainerStateFileTests: XCTestCase {
    private func savedJSON(_ edit: (inout Coordinator.SavedTrainer) -> Void = { _ in }) throws -> [UInt8] {
        var state = TrainerState()
        state.phase = .train
        state.epoch = 2
        state.stepInEpoch = 5
        state.globalStep = 45
        state.bestValAccuracy = .nan
        state.metricsLines = 12
        var saved = Coordinator.SavedTrainer(state: state, options: TrainingOptions(), optionsHash: "abc", worldSize: 2, arch: "resnet20")
        edit(&saved)
        return [UInt8](try Coordinator.sortedEncoder().encode(saved))
    }

    private func assertError(_ bytes: [UInt8], _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Coordinator.decodeSavedTrainer(bytes, source: "checkpoint trainer.json"), file: file, line: line) {
            XCTAssertEqual(String(describing: $0), expected, file: file, line: line)
        }
    }

    func testWrittenStateDecodes() throws {
        let saved = try Coordinator.decodeSavedTrainer(try savedJSON(), source: "checkpoint trainer.json")
        XCTAssertEqual(saved.state.phase, .train)
        XCTAssertEqual([saved.state.epoch, saved.state.stepInEpoch, saved.state.globalStep], [2, 5, 45])
        XCTAssertTrue(saved.state.bestValAccuracy.isNaN)
        XCTAssertEqual(saved.state.metricsLines, 12)
        XCTAssertEqual(saved.worldSize, 2)
    }

    /// A negative metricsLines used to reach `lines.prefix(-1)` in RunRecords.open, a trap on resume.
    func testOutOfRangeCountersAreOneLineErrors() throws {
        assertError(try savedJSON { $0.state.metricsLines = -1 },
                    "checkpoint trainer.json: field 'state.metricsLines' is -1, must not be negative")
        assertError(try savedJSON { $0.state.stepInEpoch = -3 },
                    "checkpoint trainer.json: field 'state.stepInEpoch' is -3, must not be negative")
        assertError(try savedJSON { $0.state.bestEpoch = -2 },
                    "checkpoint trainer.json: field 'state.bestEpoch' is -2, must be -1 (none) or an epoch")
        assertError(try savedJSON { $0.worldSize = 0 },
                    "checkpoint trainer.json: field 'worldSize' is 0, must be at least 1")
    }

    func testMalformedJSONIsAOneLineError() throws {
        assertError(Array("{\"state\": ".utf8), "checkpoint trainer.json: not valid JSON")
        assertError(Array("{}".utf8), "checkpoint trainer.json: missing field 'state'")
        let text = String(decoding: try savedJSON(), as: UTF8.self)
        assertError(Array(text.replacingOccurrences(of: "\"phase\" : \"train\"", with: "\"phase\" : \"sleep\"").utf8),
                    "checkpoint trainer.json: field 'state.phase' has an invalid value")
        assertError(Array(text.replacingOccurrences(of: "\"epoch\" : 2", with: "\"epoch\" : \"2\"").utf8),
                    "checkpoint trainer.json: field 'state.epoch' has the wrong type")
    }

    func testManifestWithNegativeStepIsRefused() throws {
        let root = try makeCheckpointTempDir("manifest")
        defer { try? FileManager.default.removeItem(at: root) }
        let store = CheckpointStore(root: root, keep: 2)
        let dir = try store.write(step: 3, files: ["a.bin": [1, 2, 3]], info: [:], isBest: false, metric: nil)
        let manifest = try Data(contentsOf: dir.appendingPathComponent("manifest.json"))
        let text = String(decoding: manifest, as: UTF8.self).replacingOccurrences(of: "\"step\" : 3", with: "\"step\" : -3")
        XCTAssertNotEqual(text, String(decoding: manifest, as: UTF8.self))
        let elsewhere = URL(fileURLWithPath: "/checkpoints/moved")
        XCTAssertEqual(try CheckpointStore.info(manifest: [UInt8](manifest), dir: URL(fileURLWithPath: "/x/ckpt-000000003")).step, 3)
        XCTAssertThrowsError(try CheckpointStore.info(manifest: Array(text.utf8), dir: elsewhere)) {
            XCTAssertEqual(String(describing: $0), "checkpoint /checkpoints/moved: unreadable manifest.json: manifest step -3 is negative")
        }
    }
}
