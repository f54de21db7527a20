import Foundation
import XCTest
@testable import DaftCoordinator
#if canImport(Glibc)
import Glibc
#endif

/// Kills a process that writes checkpoints in a loop at random moments (SIGKILL) and checks that the store
/// always has a readable, verified latest checkpoint and never a manifest naming wrong files.
///
/// The writer is this test binary re-run on `testWriterLoopHelper` with `DAFT_CKPT_CRASH_ROOT` set; without
/// that variable the helper returns at once, so it passes trivially in a normal run.
final class CheckpointCrashTests: XCTestCase {
    static let rootVariable = "DAFT_CKPT_CRASH_ROOT"

    /// Content of a checkpoint file, derived from the seed the writer records in `info`.
    static func content(name: String, seed: UInt64) -> [UInt8] {
        let size = 1000 + Int(seed % 300_000) + (name == "weights.safetensors" ? 200_000 : 0)
        // A seeded 4 KiB pattern repeated: cheap to generate, so the writer spends its time writing.
        let pattern = checkpointTestBytes(count: 4096, seed: seed &* 31 &+ UInt64(name.utf8.count))
        var bytes = [UInt8]()
        bytes.reserveCapacity(size + pattern.count)
        while bytes.count < size { bytes.append(contentsOf: pattern) }
        return Array(bytes[..<size])
    }

    /// The child's body: write checkpoints forever (keep 2 plus best), sometimes rewriting the last step.
    func testWriterLoopHelper() throws {
        guard let rootPath = ProcessInfo.processInfo.environment[CheckpointCrashTests.rootVariable] else { return }
        let store = CheckpointStore(root: URL(fileURLWithPath: rootPath), keep: 2)
        var step = (store.latestValid()?.step ?? 0) + 1
        var generation = UInt64(getpid()) << 20
        while true {
            generation += 1
            let seed = generation &* 0x9E37_79B9_7F4A_7C15
            let names = ["weights.safetensors", "optimizer.bin", "trainer.json"]
            var files: [String: [UInt8]] = [:]
            for name in names { files[name] = CheckpointCrashTests.content(name: name, seed: seed) }
            let metric = Double(seed % 1000) / 1000
            try store.write(step: step, files: files, info: ["seed": String(seed)], isBest: seed % 3 == 0,
                            metric: metric)
            if generation % 4 != 0 { step += 1 } // every 4th write is rewritten at the same step
        }
    }

    private func testExecutable() throws -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { throw XCTSkip("cannot resolve /proc/self/exe") }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func manifestCount(_ root: URL) -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.filter {
            $0.hasPrefix("ckpt-") && FileManager.default.fileExists(atPath: root.appendingPathComponent($0)
                .appendingPathComponent("manifest.json").path)
        }.count
    }

    func testSIGKILLDuringCheckpointWritesLeavesAReadableCheckpoint() throws {
        let root = try makeCheckpointTempDir("crash")
        defer { try? FileManager.default.removeItem(at: root) }
        let executable = try testExecutable()
        let store = CheckpointStore(root: root, keep: 2)
        var lastStep = 0

        // DAFT_CKPT_CRASH_ROUNDS raises the number of kills for a stress run.
        let rounds = ProcessInfo.processInfo.environment["DAFT_CKPT_CRASH_ROUNDS"].flatMap { Int($0) } ?? 4
        var interrupted = 0
        for round in 0..<rounds {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = ["DaftCoordinatorTests.CheckpointCrashTests/testWriterLoopHelper"]
            var environment = ProcessInfo.processInfo.environment
            environment[CheckpointCrashTests.rootVariable] = root.path
            process.environment = environment
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()

            // Let it commit at least one checkpoint, then kill it at a random moment.
            let deadline = Date().addingTimeInterval(30)
            while manifestCount(root) < 1 + (round == 0 ? 1 : 0), Date() < deadline, process.isRunning {
                usleep(2000)
            }
            XCTAssertTrue(process.isRunning, "the writer exited early (status \(process.terminationStatus))")
            usleep(UInt32.random(in: 0...250_000))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            XCTAssertEqual(process.terminationReason, .uncaughtSignal)

            var reports: [String] = []
            let latest = try XCTUnwrap(store.latestValid { reports.append($0) }, "round \(round): \(reports)")
            XCTAssertGreaterThanOrEqual(latest.step, lastStep, "round \(round)")
            lastStep = latest.step
            let seed = try XCTUnwrap(latest.info["seed"].flatMap { UInt64($0) })
            for name in ["weights.safetensors", "optimizer.bin", "trainer.json"] {
                XCTAssertEqual(try latest.read(name), CheckpointCrashTests.content(name: name, seed: seed),
                               "round \(round): \(name)")
            }
            // Every directory either verifies or has no manifest at all (an uncommitted write).
            let names = (try FileManager.default.contentsOfDirectory(atPath: root.path)).filter { $0.hasPrefix("ckpt-") }
            for name in names {
                let dir = root.appendingPathComponent(name)
                do {
                    _ = try store.validate(dir)
                } catch CheckpointError.missingManifest {
                    continue
                } catch {
                    XCTFail("round \(round): \(error)")
                }
            }
            if !reports.isEmpty || ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? [])
                .contains(where: { $0.hasPrefix(".") }) {
                interrupted += 1
            }
            for line in reports {
                XCTAssertTrue(line.contains("missing manifest.json"), "round \(round): \(line)")
            }
        }
        print("checkpoint crash test: \(rounds) kills, \(interrupted) left an uncommitted or hidden directory")
        // A normal write after the crashes cleans up and commits.
        let url = try store.write(step: lastStep + 1000, files: ["w.bin": [1, 2, 3]], info: [:], isBest: false, metric: nil)
        XCTAssertEqual(store.latestValid()?.url, url)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: root.path).filter { $0.hasPrefix(".") }
        XCTAssertEqual(leftovers, [])
    }
}
