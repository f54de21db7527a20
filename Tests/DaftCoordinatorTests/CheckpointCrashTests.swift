import Foundation
import XCTest
@testable import DaftCoordinator
import DaftTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Kills a process that writes checkpoints in a loop (SIGKILL at random moments, and inside the file writes)
/// and checks that the store always has a readable, verified latest checkpoint and never a manifest naming
/// wrong files.
///
/// The writer is `daft-transport checkpoint-writer ROOT` (Sources/DaftTransportTool/CheckpointWriter.swift), a
/// subprocess of its own: nothing in this class is a test case that passes without doing anything.
final class CheckpointCrashTests: XCTestCase {
    static let fileNames = ["weights.safetensors", "optimizer.bin", "trainer.json"]

    /// Nil when `bytes` is the 8-byte word the writer recorded for the file (in hex), repeated; else what is wrong.
    static func contentProblem(_ bytes: [UInt8], recordedWord hex: String?) -> String? {
        guard let hex, let word = UInt64(hex, radix: 16) else { return "the manifest records no word for it" }
        guard !bytes.isEmpty, bytes.count % 8 == 0 else { return "\(bytes.count) bytes is not a positive multiple of 8" }
        let expected = withUnsafeBytes(of: word.littleEndian) { Array($0) }
        for offset in stride(from: 0, to: bytes.count, by: 8) where !bytes[offset..<(offset + 8)].elementsEqual(expected) {
            return "bytes \(offset)..<\(offset + 8) are not the word \(hex) the manifest records"
        }
        return nil
    }

    private func manifestCount(_ root: URL) -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.filter {
            $0.hasPrefix("ckpt-") && FileManager.default.fileExists(atPath: root.appendingPathComponent($0)
                .appendingPathComponent("manifest.json").path)
        }.count
    }

    /// The most files (manifest included, temporary names not) that a checkpoint directory being written holds:
    /// a hidden staging directory, or a `ckpt-` directory without exactly the manifest and the three files.
    /// nil when no write is under way.
    private func filesOfWriteInProgress(_ root: URL) -> Int? {
        let fm = FileManager.default
        let complete = Set(CheckpointCrashTests.fileNames + ["manifest.json"])
        var most: Int? = nil
        for name in (try? fm.contentsOfDirectory(atPath: root.path)) ?? []
            where name.hasPrefix("ckpt-") || name.hasPrefix(".ckpt-") && name.contains("staging") {
            guard let inside = try? fm.contentsOfDirectory(atPath: root.appendingPathComponent(name).path) else { continue }
            let visible = Set(inside.filter { !$0.hasPrefix(".") })
            if name.hasPrefix("ckpt-") && visible == complete { continue }
            most = max(most ?? 0, visible.count)
        }
        return most
    }

    func testSIGKILLDuringCheckpointWritesLeavesAReadableCheckpoint() throws {
        let root = try makeCheckpointTempDir("crash")
        defer { try? FileManager.default.removeItem(at: root) }
        let writer = try BuiltProducts.url("daft-transport")
        let store = CheckpointStore(root: root, keep: 2)
        var lastStep = 0

        // DAFT_CKPT_CRASH_ROUNDS raises the number of kills for a stress run.
        let rounds = ProcessInfo.processInfo.environment["DAFT_CKPT_CRASH_ROUNDS"].flatMap { Int($0) } ?? 4
        var interrupted = 0
        for round in 0..<rounds {
            let process = Process()
            process.executableURL = writer
            process.arguments = ["checkpoint-writer", root.path]
            let errors = Pipe()
            process.standardOutput = FileHandle.nullDevice
            process.standardError = errors
            try process.run()

            // Let it commit at least one checkpoint, then kill it: even rounds at a random moment, odd rounds
            // inside the file writes of a checkpoint.
            let deadline = Date().addingTimeInterval(30)
            while manifestCount(root) < 1 + (round == 0 ? 1 : 0), Date() < deadline, process.isRunning {
                usleep(2000)
            }
            XCTAssertTrue(process.isRunning, "round \(round): the writer exited early (status \(process.terminationStatus))")
            if round % 2 == 0 {
                usleep(UInt32.random(in: 0...250_000))
            } else {
                // most of a write is hashing and retention; the files take ~3 ms of a ~50 ms cycle of the debug
                // build (strace): aim odd rounds into the file writes, once a directory being written holds k files
                let k = Int.random(in: 1...3)
                let aimUntil = Date().addingTimeInterval(2)
                while (filesOfWriteInProgress(root) ?? -1) < k, Date() < aimUntil { usleep(50) }
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            let stderrText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            XCTAssertEqual(process.terminationReason, .uncaughtSignal, "round \(round): \(stderrText)")
            XCTAssertEqual(process.terminationStatus, SIGKILL, "round \(round): the writer died of something else: \(stderrText)")
            XCTAssertGreaterThanOrEqual(manifestCount(root), 1, "round \(round): no committed checkpoint at all")

            var reports: [String] = []
            let latest = try XCTUnwrap(store.latestValid { reports.append($0) }, "round \(round): \(reports)")
            XCTAssertGreaterThanOrEqual(latest.step, lastStep, "round \(round)")
            lastStep = latest.step
            XCTAssertEqual(Set(latest.files.keys), Set(CheckpointCrashTests.fileNames), "round \(round)")
            for name in CheckpointCrashTests.fileNames {
                let problem = CheckpointCrashTests.contentProblem(try latest.read(name), recordedWord: latest.info[name])
                XCTAssertNil(problem, "round \(round): \(latest.url.lastPathComponent)/\(name): \(problem ?? "")")
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
