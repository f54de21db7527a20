import Foundation
import XCTest
import DaftInterop

/// A full disk (issue 15 part 4), with the release binary: `--out` on a small tmpfs the test mounts (root only, as in
/// CI) that fills up during a checkpoint write. The run stops with a one-line error naming the file, the newest
/// valid checkpoint is the previous one, the partial directory is never taken as valid, and once space is freed
/// `--resume auto` finishes with the uninterrupted run's weights, bit for bit.
final class EndToEndFullDiskTests: XCTestCase {
    func testEndToEndCheckpointWriteHittingENOSPCKeepsThePreviousCheckpointAndResumes() throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a tmpfs needs root (CI runs as root)") }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("daft-enospc-\(UUID().uuidString)")
        let disk = work.appendingPathComponent("disk")
        try FileManager.default.createDirectory(at: disk, withIntermediateDirectories: true)
        defer { _ = Glibc.system("umount '\(disk.path)' 2>/dev/null"); try? FileManager.default.removeItem(at: work) }
        guard Glibc.system("mount -t tmpfs -o size=2m tmpfs '\(disk.path)'") == 0 else { throw XCTSkip("mount -t tmpfs failed") }
        let daft = try Harness.binary("daft").path
        func run(_ args: [String]) throws -> Harness.Result { try Harness.run(daft, args, environment: [:], timeout: 300) }
        let data = work.appendingPathComponent("data").path, pre = work.appendingPathComponent("pre").path
        XCTAssertEqual(try run(["data", "export", "--data", "fashion-mnist:target-train@id", "--limit", "64", "--out", data]).status, 0)
        XCTAssertEqual(try run(["pretrain", "--arch", "resnet20", "--widths", "4,8,16", "--data", "npy:\(data)/x.npy,\(data)/y.npy",
                                "--mean", "0.286", "--std", "0.353", "--max-steps", "2", "--batch-size", "16", "--out", pre]).status, 0)
        let common = ["finetune", "--method", "ft", "--weights", pre + "/final.safetensors", "--data", "npy:\(data)/x.npy,\(data)/y.npy",
                      "--batch-size", "8", "--epochs", "3", "--checkpoint-every", "1", "--keep", "2", "--lr", "0.01", "--no-epoch-ood", "--quiet"]
        let full = work.appendingPathComponent("full").path
        XCTAssertEqual(try run(common + ["--out", full]).status, 0)

        // leave ≈580 KB: two checkpoints (≈250 KB each) fit, the third does not
        let filler = disk.appendingPathComponent("filler")
        FileManager.default.createFile(atPath: filler.path, contents: Data(count: 1_500_000))
        let out = disk.appendingPathComponent("run").path
        let failed = try run(common + ["--out", out])
        XCTAssertNotEqual(failed.status, 0, "the run must stop on a full disk")
        let lines = failed.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, failed.stderr)
        XCTAssertTrue(failed.stderr.contains("No space left on device") && failed.stderr.contains(out + "/checkpoints/ckpt-"), failed.stderr)
        let ckpts = out + "/checkpoints"
        let names = try FileManager.default.contentsOfDirectory(atPath: ckpts).filter { $0.hasPrefix("ckpt-") }.sorted()
        let valid = names.filter { FileManager.default.fileExists(atPath: "\(ckpts)/\($0)/manifest.json") }
        XCTAssertFalse(valid.isEmpty, "a checkpoint written before the disk filled is still valid: \(names)")
        XCTAssertGreaterThan(names.count, valid.count, "the failed write left a partial directory (without manifest): \(names)")
        XCTAssertEqual(try run(["inspect", "\(ckpts)/\(valid.last!)"]).status, 0, "the newest valid checkpoint verifies")

        // space freed: resume skips the partial directory and ends where the uninterrupted run ends
        try FileManager.default.removeItem(at: filler)
        let resumed = try run(common + ["--out", out, "--resume", "auto"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("missing manifest.json (incomplete checkpoint)"), resumed.stdout)
        XCTAssertTrue(resumed.stdout.contains("resume: \(ckpts)/\(valid.last!)"), resumed.stdout)
        XCTAssertEqual(try SafeTensorsFile.read(URL(fileURLWithPath: out + "/final.safetensors")).tensors,
                       try SafeTensorsFile.read(URL(fileURLWithPath: full + "/final.safetensors")).tensors)
    }
}
