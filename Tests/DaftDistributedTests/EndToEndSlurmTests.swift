import Foundation
import XCTest
import DaftInterop

/// Preemption on a real Slurm (issue 15 part 3), heavy, root only (as in CI): `cluster/slurm-local.sh up` brings up a
/// one-node Slurm on loopback from Debian's slurm-wlm and munge; `cluster/slurm.sbatch` runs a 2-rank `daft finetune`
/// under `sbatch`; `scancel --signal=TERM --batch` (SIGTERM to the batch shell only, what `--signal=B:TERM@60` sends
/// before the time limit) preempts it; the script turns that into SIGUSR1 to mpirun, the ranks checkpoint and exit
/// 76, the script requeues the job, and the second run resumes with `--resume auto` and ends with the uninterrupted
/// `mpirun -np 2` run's weights, bit for bit.
final class EndToEndSlurmTests: XCTestCase {
    func testEndToEndSlurmPreemptRequeueResumes() throws {
        guard getuid() == 0 else { throw XCTSkip("starting munged, slurmctld and slurmd needs root (CI runs as root)") }
        let started = Date()
        let work = URL(fileURLWithPath: "/tmp").appendingPathComponent("daft-slurm-test-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let localSlurm = Harness.packageRoot.appendingPathComponent("cluster/slurm-local.sh").path
        let slurmDir = work.appendingPathComponent("slurm").path
        let slurmEnv = ["DAFT_SLURM_DIR": slurmDir, "SLURM_CONF": slurmDir + "/slurm.conf"]
        func slurm(_ tool: String, _ args: [String], timeout: Double = 30) throws -> Harness.Result {
            try Harness.run("/usr/bin/env", [tool] + args, environment: slurmEnv, timeout: timeout)
        }
        var jobID = ""
        defer {
            if !jobID.isEmpty { _ = try? slurm("scancel", [jobID]) }
            let down = try? Harness.run("/bin/bash", [localSlurm, "down"], environment: slurmEnv, timeout: 120)
            if down?.status != 0 { print("slurm-local down: \(down?.stdout ?? "") \(down?.stderr ?? "")") }
            try? FileManager.default.removeItem(at: work)
        }
        // the first run may install slurm-wlm and munge with apt-get
        let up = try Harness.run("/bin/bash", [localSlurm, "up"], environment: slurmEnv, timeout: 900)
        if up.status == 3 { throw XCTSkip("slurm-wlm and munge unavailable: \(up.stderr)") }
        XCTAssertEqual(up.status, 0, "slurm-local up: " + up.stdout + up.stderr)
        guard up.status == 0 else { return }

        // tiny data, a narrow pretrained model, the uninterrupted 2-rank run
        let daft = try Harness.binary("daft").path
        func run(_ args: [String]) throws -> Harness.Result { try Harness.run(daft, args, environment: [:], timeout: 300) }
        let data = work.appendingPathComponent("data").path, pre = work.appendingPathComponent("pre").path
        XCTAssertEqual(try run(["data", "export", "--data", "fashion-mnist:target-train@id", "--limit", "256", "--out", data]).status, 0)
        XCTAssertEqual(try run(["pretrain", "--arch", "resnet20", "--widths", "4,8,16", "--data", "npy:\(data)/x.npy,\(data)/y.npy",
                                "--mean", "0.286", "--std", "0.353", "--max-steps", "2", "--batch-size", "16", "--out", pre]).status, 0)
        // 20 epochs of 16 steps: the preemption comes after the first epoch, 300 steps before the end
        let common = ["--method", "daft", "--weights", pre + "/final.safetensors", "--data", "npy:\(data)/x.npy,\(data)/y.npy",
                      "--batch-size", "16", "--epochs", "20", "--lr", "0.01", "--no-epoch-ood", "--quiet"]
        let full = work.appendingPathComponent("full").path
        let reference = try Harness.run(try Harness.mpirunPath(), ["-np", "2", "--oversubscribe", "--bind-to", "none", "-x", "OPENBLAS_NUM_THREADS=1",
                                                                  daft, "finetune"] + common + ["--out", full], environment: [:], timeout: 300)
        XCTAssertEqual(reference.status, 0, reference.stdout + reference.stderr)

        // the same run as a Slurm batch job: 1 node, 2 tasks (the script's 2 × 4 overridden on sbatch's command line)
        let out = work.appendingPathComponent("slurm-run").path
        let sbatchScript = Harness.packageRoot.appendingPathComponent("cluster/slurm.sbatch").path
        let jobEnv = ["DAFT": daft, "DAFT_MPIRUN_FLAGS": "--oversubscribe --bind-to none"]
        let submitted = try Harness.run("/usr/bin/env", ["sbatch", "--parsable", "--nodes=1", "--ntasks=2", "--ntasks-per-node=2",
                                                         "--chdir=\(work.path)", "--output=\(work.path)/job-%j.out", sbatchScript] + common + ["--out", out],
                                        environment: slurmEnv.merging(jobEnv) { $1 }, timeout: 30)
        XCTAssertEqual(submitted.status, 0, submitted.stderr)
        jobID = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard submitted.status == 0, Int(jobID) != nil else { return XCTFail("sbatch: \(submitted.stdout) \(submitted.stderr)") }

        func job() throws -> [String: String] {
            let shown = try slurm("scontrol", ["show", "job", "-o", jobID])
            var fields: [String: String] = [:]
            for field in shown.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
                guard let eq = field.firstIndex(of: "=") else { continue }
                fields[String(field[..<eq])] = String(field[field.index(after: eq)...])
            }
            return fields
        }
        /// Polls `scontrol show job` until `done` holds (or the deadline); returns the last fields seen.
        func waitFor(_ what: String, seconds: Double, _ done: ([String: String]) throws -> Bool) throws -> [String: String] {
            let deadline = Date().addingTimeInterval(seconds)
            var fields = try job()
            while try !done(fields) {
                guard Date() < deadline else { XCTFail("timed out waiting for \(what): \(fields)"); return fields }
                usleep(100_000)
                fields = try job()
            }
            return fields
        }
        let checkpoints = out + "/checkpoints"
        func newestCheckpointStep() -> Int {
            ((try? FileManager.default.contentsOfDirectory(atPath: checkpoints)) ?? [])
                .filter { $0.hasPrefix("ckpt-") }.compactMap { Int($0.dropFirst(5)) }.max() ?? -1
        }
        // running, and past its first checkpoint (ckpt-000000000 is written when BN conversion ends)
        var fields = try waitFor("the job to run and write a checkpoint past the first", seconds: 180) {
            $0["JobState"] == "RUNNING" && newestCheckpointStep() > 0
        }
        XCTAssertEqual(fields["Restarts"], "0")
        let running = Date()
        // a moment later, so the preemption usually lands inside an epoch (≈50 steps/s here: 300 steps are left)
        usleep(UInt32.random(in: 0..<300_000))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/final.safetensors"), "the run ended before it was preempted")
        let preempt = try slurm("scancel", ["--signal=TERM", "--batch", jobID])
        XCTAssertEqual(preempt.status, 0, preempt.stderr)

        // requeued (Restarts=1; Slurm holds it for cred_expire before it runs again), then the second run completes
        let ended = ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"]
        fields = try waitFor("the requeue", seconds: 120) { Int($0["Restarts"] ?? "0") ?? 0 >= 1 || ended.contains($0["JobState"] ?? "") }
        let requeued = Date()
        fields = try waitFor("the requeued run to start", seconds: 120) { $0["JobState"] != "PENDING" }
        let rerun = Date()
        fields = try waitFor("the requeued run to complete", seconds: 240) { ended.contains($0["JobState"] ?? "") }
        XCTAssertEqual(fields["JobState"], "COMPLETED", "\(fields)")
        XCTAssertEqual(fields["ExitCode"], "0:0", "\(fields)")
        XCTAssertEqual(fields["Restarts"], "1", "exactly one requeue: \(fields)")

        // one output file (--open-mode=append), two runs: preempted at a checkpoint, then resumed from it
        let log = try String(contentsOfFile: "\(work.path)/job-\(jobID).out", encoding: .utf8)
        let lines = log.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains { $0.hasPrefix("slurm.sbatch: job \(jobID) run 1 started") }, log)
        XCTAssertTrue(lines.contains { $0.hasPrefix("slurm.sbatch: job \(jobID) run 2 started") }, log)
        XCTAssertTrue(lines.contains { $0.hasPrefix("slurm.sbatch: SIGTERM: asking the ranks for a checkpoint (SIGUSR1 to mpirun") }, log)
        XCTAssertTrue(lines.contains("resume: no valid checkpoint under \(checkpoints); starting fresh"), "the first run starts fresh with --resume auto: " + log)
        guard let preempted = lines.first(where: { $0.hasPrefix("preempted: checkpoint ckpt-") }) else { return XCTFail("no preempted line: " + log) }
        // mpirun forwards SIGUSR1 to each rank in turn: the two may land on either side of a step boundary
        XCTAssertTrue(preempted.hasSuffix("(SIGUSR1); resume with --resume auto")
                      || preempted.hasSuffix("(SIGUSR1 on 1 of 2 ranks); resume with --resume auto"), preempted)
        let name = String(preempted.dropFirst("preempted: checkpoint ".count).prefix("ckpt-000000000".count))
        XCTAssertTrue(lines.contains { $0.hasPrefix("slurm.sbatch: preempted (exit 76, checkpoint written): requeueing job \(jobID)") }, log)
        XCTAssertTrue(lines.contains { $0.hasPrefix("resume: \(checkpoints)/\(name) ") }, "the second run resumes from \(name): " + log)
        XCTAssertEqual(lines.filter { $0.hasPrefix("summary: ") }.count, 1, "only the second run finishes: " + log)
        XCTAssertLessThan(lines.firstIndex(of: preempted)!, lines.firstIndex { $0.hasPrefix("slurm.sbatch: job \(jobID) run 2 started") } ?? -1, log)

        XCTAssertEqual(try SafeTensorsFile.read(URL(fileURLWithPath: out + "/final.safetensors")).tensors,
                       try SafeTensorsFile.read(URL(fileURLWithPath: full + "/final.safetensors")).tensors)
        let resumeLine = lines.first { $0.hasPrefix("resume: \(checkpoints)/\(name) ") } ?? ""
        func s(_ a: Date, _ b: Date) -> String { String(format: "%.1f s", b.timeIntervalSince(a)) }
        print("EndToEndSlurmTests: preempted at \(name) (\(resumeLine.split(separator: " ").suffix(5).joined(separator: " "))), "
              + "requeued \(s(running, requeued)) after the checkpoint, pending \(s(requeued, rerun)), second run \(s(rerun, Date())), "
              + "bit-identical; whole test \(s(started, Date()))")
    }
}
