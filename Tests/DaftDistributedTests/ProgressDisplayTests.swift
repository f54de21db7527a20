import Foundation
import XCTest

/// Progress bars on a terminal, plain lines elsewhere (issue 12 part 1), with the release binary: the same tiny
/// run under a pseudo-terminal (`script`) and with stdout on a pipe.
final class ProgressDisplayTests: XCTestCase {
    func testBarsOnATerminalPlainLinesOnAPipe() throws {
        let script = "/usr/bin/script"
        guard FileManager.default.isExecutableFile(atPath: script) else { throw XCTSkip("util-linux script is not installed") }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("daft-progress-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let committed = Harness.packageRoot.appendingPathComponent("pretrained/resnet20-fashion-source.safetensors").path
        let args = ["finetune", "--method", "daft", "--weights", committed, "--data", "fashion-mnist:target-train@id", "--limit", "256",
                    "--val-data", "fashion-mnist:target-val@id", "--eval-limit", "128", "--epochs", "1", "--batch-size", "32", "--no-epoch-ood"]
        let daft = try Harness.binary("daft").path
        let quoted = (["'\(daft)'"] + args + ["--out", "'\(out.path)/tty'"]).joined(separator: " ")
        let tty = try Harness.run(script, ["-qec", quoted, "/dev/null"], environment: [:], timeout: 300)
        XCTAssertEqual(tty.status, 0, tty.stdout + tty.stderr)
        XCTAssertTrue(tty.stdout.contains("\r\u{1B}[2Kepoch 0 ["), "a bar redrawn in place: \(tty.stdout.suffix(600))")
        XCTAssertTrue(tty.stdout.contains("8/8") && tty.stdout.contains("img/s  ETA") && tty.stdout.contains("loss "), tty.stdout.suffix(600).description)
        XCTAssertTrue(tty.stdout.contains("convert-bn [") && tty.stdout.contains("eval ID val ["), "bars for the conversion pass and the evaluation")
        XCTAssertFalse(tty.stdout.contains("epoch 0 step 8/8"), "no plain step lines on a terminal")
        let pipe = try Harness.run(daft, args + ["--out", out.path + "/pipe"], environment: [:], timeout: 300)
        XCTAssertEqual(pipe.status, 0, pipe.stderr)
        XCTAssertFalse(pipe.stdout.contains("\r"), "no redraws when stdout is not a terminal")
        XCTAssertTrue(pipe.stdout.contains("epoch 0 step 8/8"), pipe.stdout)
        let quiet = try Harness.run(daft, args + ["--out", out.path + "/quiet", "--quiet"], environment: [:], timeout: 300)
        XCTAssertFalse(quiet.stdout.contains(" step "), "--quiet: no step lines")
        XCTAssertTrue(quiet.stdout.contains("epoch 0 done"), quiet.stdout)
    }
}
