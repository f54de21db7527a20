import Foundation
import XCTest
import DaftInterop

/// Faults during a real `mpirun -np 2` fine-tune with the release binary (issue 15 parts 2–4), each ending with
/// `--resume auto` and the uninterrupted run's final weights, bit for bit:
/// - preemption: SIGUSR1 to `mpirun` (what `cluster/slurm.sbatch` forwards), SIGTERM to every rank (srun,
///   Kubernetes) or to one rank, at a random moment → every rank joins a checkpoint, exit 76;
/// - one rank `kill -9`ed mid-step → `mpirun` names it and exits non-zero at once, the newest checkpoint verifies;
/// - one rank stopped (SIGSTOP) → the stall watchdog names it and the job ends (exit 75);
/// - unwritable output (EACCES), at the start and mid-run → one line naming the folder, nothing run or nothing lost.
///
/// `DAFT_RELIABILITY_TRIALS=N` (default 3 for preemption, 1 for the others) repeats each fault at new random moments:
/// the long mode whose figures docs/reliability.md reports. The moments come from a seeded generator whose seed is
/// printed (`DAFT_RELIABILITY_SEED` replays a run).
final class EndToEndFaultTests: XCTestCase {
    static var work: URL!
    static var data = "", pretrained = ""
    static var setUpFailure: Error?

    override class func setUp() {
        super.setUp()
        work = FileManager.default.temporaryDirectory.appendingPathComponent("daft-faults-\(UUID().uuidString)")
        pretrained = work.appendingPathComponent("pre/final.safetensors").path
        let dataDir = work.appendingPathComponent("data").path
        data = "npy:\(dataDir)/x.npy,\(dataDir)/y.npy"
        do {
            try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
            try must(["data", "export", "--data", "fashion-mnist:target-train@id", "--limit", "256", "--out", dataDir])
            try must(["pretrain", "--arch", "resnet20", "--widths", "4,8,16", "--data", data, "--mean", "0.286", "--std", "0.353",
                      "--max-steps", "4", "--batch-size", "16", "--out", work.appendingPathComponent("pre").path])
        } catch {
            setUpFailure = error
        }
    }

    override func setUpWithError() throws {
        try super.setUpWithError()
        if let failure = Self.setUpFailure { throw failure }
    }

    override class func tearDown() {
        _ = Glibc.system("chmod -R u+rwx '\(work.path)' 2>/dev/null")
        try? FileManager.default.removeItem(at: work)
        super.tearDown()
    }

    /// Throws with stderr unless `daft args` (one process) exits 0; for the class set-up.
    static func must(_ args: [String]) throws {
        let r = try Harness.run(try Harness.binary("daft").path, args, environment: [:], timeout: 300)
        guard r.status == 0 else { throw SetUpFailed(description: "daft \(args.joined(separator: " ")) failed: \(r.stderr)") }
    }

    /// The fine-tune every fault interrupts: DAFT, 40 epochs of 16 steps (≈3 s on 2 ranks), validation each epoch.
    var finetune: [String] {
        ["finetune", "--method", "daft", "--weights", Self.pretrained, "--data", Self.data, "--val-data", Self.data, "--eval-limit", "64",
         "--batch-size", "16", "--epochs", "40", "--lr", "0.01", "--checkpoint-every", "50", "--keep", "3", "--no-epoch-ood", "--quiet"]
    }
    let totalSteps = 640

    func dir(_ name: String) -> String { Self.work.appendingPathComponent(name).path }
    func weights(_ run: String) throws -> [String: SafeTensor] { try SafeTensorsFile.read(URL(fileURLWithPath: run + "/final.safetensors")).tensors }

    static var trials: Int? { ProcessInfo.processInfo.environment["DAFT_RELIABILITY_TRIALS"].flatMap { Int($0) } }

    /// Random moments, reproducible from the printed seed.
    lazy var random: SplitMix = {
        let seed = ProcessInfo.processInfo.environment["DAFT_RELIABILITY_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64(1 << 40))
        print("\(name): DAFT_RELIABILITY_SEED=\(seed)")
        return SplitMix(seed: seed)
    }()

    /// The uninterrupted 2-rank run's directory (made once per class, on first use).
    static var reference: String?
    func uninterrupted() throws -> String {
        if let r = Self.reference { return r }
        let out = dir("uninterrupted")
        let r = try Harness.run(try Harness.mpirunPath(), try mpirunArguments(finetune + ["--out", out]), environment: [:], timeout: 300)
        XCTAssertEqual(r.status, 0, r.stderr)
        Self.reference = out
        return out
    }

    func mpirunArguments(_ args: [String], environment: [String: String] = [:]) throws -> [String] {
        var a = ["-np", "2", "--oversubscribe", "--bind-to", "none", "-x", "OPENBLAS_NUM_THREADS=1"]
        for (k, v) in environment.sorted(by: { $0.key < $1.key }) { a += ["-x", "\(k)=\(v)"] }
        return a + [try Harness.binary("daft").path] + args
    }

    /// Waits until a random epoch k ∈ [2, 36] has ended (its checkpoint exists), then a random part of one epoch's
    /// time as this very run measures it (epochs 1 and 2), so the fault lands at a random step whatever the load.
    func waitForRandomMoment(_ out: String) {
        func reached(_ step: Int) -> Bool {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints")) ?? []
            return names.contains { $0.hasPrefix("ckpt-") && (Int($0.dropFirst(5)) ?? -1) >= step
                && FileManager.default.fileExists(atPath: "\(out)/checkpoints/\($0)/manifest.json") }
        }
        func wait(_ step: Int) -> Date {
            let deadline = Date().addingTimeInterval(120)
            while !reached(step) && Date() < deadline { usleep(2_000) }
            return Date()
        }
        let first = wait(16)
        let epoch = max(0, wait(32).timeIntervalSince(first))
        _ = wait(16 * Int(2 + random.next() % 35))
        usleep(UInt32(random.uniform(0, epoch) * 1e6))
    }

    /// The pids of the ranks of the run writing to `out`, by `OMPI_COMM_WORLD_RANK` (from /proc).
    func rankPIDs(_ out: String) -> [Int: pid_t] {
        var found: [Int: pid_t] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry),
                  let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"),
                  let environ = FileManager.default.contents(atPath: "/proc/\(entry)/environ") else { continue }
            let args = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard args.first?.hasSuffix("/daft") == true, args.contains(out) else { continue }
            for v in environ.split(separator: 0).map({ String(decoding: $0, as: UTF8.self) }) where v.hasPrefix("OMPI_COMM_WORLD_RANK=") {
                if let r = Int(v.dropFirst("OMPI_COMM_WORLD_RANK=".count)) { found[r] = pid }
            }
        }
        return found
    }

    func waitForRanks(_ out: String) -> [Int: pid_t] {
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let pids = rankPIDs(out)
            if pids.count == 2 { return pids }
            usleep(10_000)
        }
        XCTFail("the 2 ranks of the run into \(out) did not appear in /proc")
        return [:]
    }

    /// Checkpoint directories with a manifest, oldest first.
    func validCheckpoints(_ out: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints")
            .filter { $0.hasPrefix("ckpt-") && FileManager.default.fileExists(atPath: "\(out)/checkpoints/\($0)/manifest.json") }.sorted()
    }

    /// `daft inspect` verifies every file of the newest valid checkpoint against its manifest; resuming from it ends
    /// with the uninterrupted run's weights and records.
    func assertNewestCheckpointVerifiesAndResumeIsBitIdentical(_ out: String, expectedCheckpoint: String? = nil, ranks: Int = 2,
                                                               reference: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let valid = try validCheckpoints(out)
        guard let newest = valid.last else { return XCTFail("no valid checkpoint in \(out)", file: file, line: line) }
        if let expectedCheckpoint { XCTAssertEqual(newest, expectedCheckpoint, "the newest valid checkpoint", file: file, line: line) }
        let inspect = try Harness.run(try Harness.binary("daft").path, ["inspect", "\(out)/checkpoints/\(newest)"], environment: [:], timeout: 60)
        XCTAssertEqual(inspect.status, 0, "the newest checkpoint verifies: \(inspect.stderr)", file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/final.safetensors"), "the run finished before the fault", file: file, line: line)
        let args = finetune + ["--out", out, "--resume", "auto"]
        let resumed = ranks == 1 ? try Harness.run(try Harness.binary("daft").path, args, environment: [:], timeout: 300)
                                 : try Harness.run(try Harness.mpirunPath(), try mpirunArguments(args), environment: [:], timeout: 300)
        XCTAssertEqual(resumed.status, 0, resumed.stderr, file: file, line: line)
        XCTAssertTrue(resumed.stdout.contains("resume: \(out)/checkpoints/\(newest)"), resumed.stdout, file: file, line: line)
        XCTAssertEqual(try weights(out), try weights(reference), "final weights after resume", file: file, line: line)
        try RunRecordsChecks.assertSameRecords(resumed: out, uninterrupted: reference, file: file, line: line)
    }

    // MARK: preemption

    /// A preemption signal at a random moment: the job exits 76 after a checkpoint of the step it stopped at, and
    /// `--resume auto` ends bit-identical. The trials cycle through SIGUSR1 to mpirun, SIGTERM to both ranks and
    /// SIGTERM to one rank (the other learns it through the all-reduce at the next step).
    func testEndToEndPreemptionAtARandomStepCheckpointsExits76AndResumesBitIdentical() throws {
        let reference = try uninterrupted()
        var landed: [String] = []
        for trial in 0..<(Self.trials ?? 3) {
            let out = dir("preempt-\(trial)")
            let run = try Harness.start(try Harness.mpirunPath(), try mpirunArguments(finetune + ["--out", out]))
            let pids = waitForRanks(out)
            waitForRandomMoment(out)
            let how: String
            switch trial % 3 {
            case 0: how = "SIGUSR1 to mpirun"; kill(run.pid, SIGUSR1)
            case 1: how = "SIGTERM to both ranks"; for pid in pids.values { kill(pid, SIGTERM) }
            default:
                let rank = (trial / 3) % 2
                how = "SIGTERM to rank \(rank)"; kill(pids[rank] ?? 0, SIGTERM)
            }
            let r = try run.finish(timeout: 120)
            let context = "trial \(trial) (\(how)): status \(r.status)\n\(r.stdout)\n\(r.stderr)"
            XCTAssertEqual(r.status, 76, context)
            guard let range = r.stdout.range(of: #"preempted: checkpoint (ckpt-\d+) written at step (\d+) \((SIGTERM|SIGUSR1)( on 1 of 2 ranks)?\)"#, options: .regularExpression) else {
                XCTFail("no preempted line: \(context)"); continue
            }
            let words = r.stdout[range].split(separator: " ")
            let checkpoint = String(words[2]), step = Int(words[6])!
            XCTAssertEqual(checkpoint, String(format: "ckpt-%09d", step), context)
            XCTAssertLessThan(step, totalSteps, context)
            // rank 0 names the signal, and says when only one rank had received it at the step the ranks agreed on
            // (the two kills of "both ranks", and mpirun's forwarding of SIGUSR1 to each rank, may straddle a step
            // boundary)
            switch trial % 3 {
            case 0: XCTAssertTrue(r.stdout.contains("(SIGUSR1)") || r.stdout.contains("(SIGUSR1 on 1 of 2 ranks)"), context)
            case 1: XCTAssertTrue(r.stdout.contains("(SIGTERM)") || r.stdout.contains("(SIGTERM on 1 of 2 ranks)"), context)
            default: XCTAssertTrue(r.stdout.contains("(SIGTERM on 1 of 2 ranks)"), context)
            }
            landed.append("\(how) → step \(step)")
            try assertNewestCheckpointVerifiesAndResumeIsBitIdentical(out, expectedCheckpoint: checkpoint, reference: reference)
            try? FileManager.default.removeItem(atPath: out)
        }
        print("preemption trials: \(landed.count) of \(Self.trials ?? 3) resumed bit-identical: \(landed.joined(separator: "; "))")
    }

    // MARK: one rank dies or hangs

    /// One trial of a fault in one rank: starts the 2-rank run into `out` with `DAFT_STALL_TIMEOUT=stallTimeout`,
    /// sends `signal` to a random rank at a random step, waits for mpirun, and kills whatever is left.
    func signalOneRank(_ out: String, _ signal: Int32, stallTimeout: String) throws -> (result: Harness.Result, rank: Int, pid: pid_t, seconds: Double) {
        let run = try Harness.start(try Harness.mpirunPath(), try mpirunArguments(finetune + ["--out", out], environment: ["DAFT_STALL_TIMEOUT": stallTimeout]))
        let pids = waitForRanks(out)
        waitForRandomMoment(out)
        let rank = Int(random.next() % 2), pid = pids[rank] ?? 0
        let sent = Date()
        kill(pid, signal)
        let r = try run.finish(timeout: 120)
        let took = Date().timeIntervalSince(sent)
        for p in pids.values { kill(p, SIGKILL) }
        _ = Glibc.system("pkill -9 -f 'daft finetune.*\(out)' >/dev/null 2>&1")
        return (r, rank, pid, took)
    }

    /// `kill -9` of one rank at a random moment: mpirun names the rank at once (well inside the stall timeout) and
    /// exits non-zero, the newest checkpoint verifies, and `--resume auto` ends bit-identical.
    func testEndToEndOneRankKilledMidStepIsNamedAndResumeIsBitIdentical() throws {
        let reference = try uninterrupted()
        var seconds: [Double] = []
        for trial in 0..<(Self.trials ?? 1) {
            let out = dir("killed-\(trial)")
            let (r, rank, pid, took) = try signalOneRank(out, SIGKILL, stallTimeout: "30")
            seconds.append(took)
            let context = "trial \(trial) (rank \(rank), pid \(pid)): status \(r.status)\n\(r.stdout)\n\(r.stderr)"
            XCTAssertNotEqual(r.status, 0, context)
            XCTAssertLessThan(took, 30, "the job must end within the stall timeout: \(context)")
            // mpirun's own line, e.g. "mpirun noticed that process rank 0 with PID 0 on node vm exited on signal 9 (Killed)."
            XCTAssertTrue(r.stderr.contains("process rank \(rank) with PID") && r.stderr.contains("exited on signal 9"),
                          "mpirun names the lost rank: \(context)")
            try assertNewestCheckpointVerifiesAndResumeIsBitIdentical(out, reference: reference)
            try? FileManager.default.removeItem(atPath: out)
        }
        print("kill -9 of one rank: \(seconds.count) trials, job ended \(seconds.map { String(format: "%.2f", $0) }.joined(separator: ", ")) s after the kill, all resumed bit-identical")
    }

    /// SIGSTOP of one rank: the other rank's stall watchdog (DAFT_STALL_TIMEOUT=3) names it, the job ends with the
    /// watchdog's exit code 75, and `--resume auto` ends bit-identical.
    func testEndToEndOneRankStoppedIsNamedByTheWatchdogAndResumeIsBitIdentical() throws {
        let reference = try uninterrupted()
        var seconds: [Double] = []
        for trial in 0..<(Self.trials ?? 1) {
            let out = dir("stopped-\(trial)")
            let (r, rank, _, took) = try signalOneRank(out, SIGSTOP, stallTimeout: "3")
            seconds.append(took)
            let context = "trial \(trial) (rank \(rank)): status \(r.status) after \(took) s\n\(r.stdout)\n\(r.stderr)"
            XCTAssertFalse(r.timedOut, context)
            XCTAssertEqual(r.status, 75, context)
            // "did not arrive" when it stopped before a collective, "did not finish" inside a gated MPI_Allreduce
            XCTAssertTrue(r.stderr.contains("daft watchdog: collective #") &&
                          (r.stderr.contains("did not arrive: rank \(rank);") || r.stderr.contains("did not finish: rank \(rank);")), context)
            XCTAssertLessThan(took, 30, context)
            try assertNewestCheckpointVerifiesAndResumeIsBitIdentical(out, reference: reference)
            try? FileManager.default.removeItem(atPath: out)
        }
        print("SIGSTOP of one rank: \(seconds.count) trials, job ended \(seconds.map { String(format: "%.2f", $0) }.joined(separator: ", ")) s after the stop, all resumed bit-identical")
    }

    // MARK: unwritable output

    /// EACCES. Root ignores permission bits, so as root (CI) the runs are made as `nobody` through `setpriv`.
    /// An `--out` that cannot be created: one line naming it, before any step. A checkpoint folder made read-only
    /// mid-run: one line naming the checkpoint that could not be written, the previous one is the newest valid one,
    /// and once it is writable again `--resume auto` ends with the uninterrupted (1-rank) run's weights.
    func testEndToEndUnwritableOutputIsOneLineAndNothingIsLost() throws {
        let daft = try Harness.binary("daft").path
        var prefix: [String] = []
        let root = getuid() == 0
        if root {
            prefix = ["/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
            let probe = try Harness.run(prefix[0], Array(prefix.dropFirst()) + [daft, "--help"], environment: [:], timeout: 30)
            guard probe.status == 0 else { throw XCTSkip("cannot run \(daft) as nobody (setpriv): \(probe.stderr)") }
        }
        func daftAsUser(_ args: [String]) throws -> Harness.Result {
            root ? try Harness.run(prefix[0], Array(prefix.dropFirst()) + [daft] + args, environment: [:], timeout: 300)
                 : try Harness.run(daft, args, environment: [:], timeout: 300)
        }
        let area = dir("eacces")
        try FileManager.default.createDirectory(atPath: area, withIntermediateDirectories: true)
        if root { XCTAssertEqual(chown(area, 65534, 65534), 0) }
        let single = finetune.map { $0 == "40" ? "20" : $0 }  // 20 epochs, one rank
        let reference = area + "/reference"
        XCTAssertEqual(try daftAsUser(single + ["--out", reference]).status, 0)

        // an --out that cannot be created
        let locked = area + "/locked"
        try FileManager.default.createDirectory(atPath: locked, withIntermediateDirectories: true)
        if root { XCTAssertEqual(chown(locked, 65534, 65534), 0) }
        XCTAssertEqual(chmod(locked, 0o555), 0)
        let refused = try daftAsUser(single + ["--out", locked + "/run"])
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("\(locked)/run: cannot create directory: Permission denied"), refused.stderr)
        XCTAssertFalse(refused.stdout.contains("epoch"), "nothing ran: \(refused.stdout)")

        // the checkpoint folder made read-only mid-run
        let out = area + "/run"
        let process = root ? try Harness.start(prefix[0], Array(prefix.dropFirst()) + [daft] + single + ["--out", out])
                           : try Harness.start(daft, single + ["--out", out])
        let ckpts = out + "/checkpoints"
        let deadline = Date().addingTimeInterval(120)
        while (try? validCheckpoints(out).contains { Int($0.dropFirst(5))! >= 32 }) != true && Date() < deadline { usleep(5_000) }
        XCTAssertEqual(chmod(ckpts, 0o555), 0)
        let before = try validCheckpoints(out)
        let failed = try process.finish(timeout: 120)
        XCTAssertEqual(failed.status, 1, failed.stderr)
        XCTAssertEqual(failed.stderr.split(separator: "\n").count, 1, failed.stderr)
        XCTAssertTrue(failed.stderr.contains("\(ckpts)/") && failed.stderr.contains("Permission denied"), failed.stderr)
        XCTAssertEqual(try validCheckpoints(out), before, "no checkpoint was added or lost")
        XCTAssertEqual(chmod(ckpts, 0o755), 0)
        let valid = try validCheckpoints(out)
        XCTAssertEqual(try Harness.run(daft, ["inspect", "\(ckpts)/\(valid.last!)"], environment: [:], timeout: 60).status, 0)
        let resumed = try daftAsUser(single + ["--out", out, "--resume", "auto"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resume: \(ckpts)/\(valid.last!)"), resumed.stdout)
        XCTAssertEqual(try weights(out), try weights(reference))
        try RunRecordsChecks.assertSameRecords(resumed: out, uninterrupted: reference)
    }
}

/// A class set-up step that failed; every test then fails with it.
struct SetUpFailed: Error, CustomStringConvertible { let description: String }

/// SplitMix64: the fault moments, reproducible from a printed seed.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform(_ low: Double, _ high: Double) -> Double { low + (high - low) * Double(next() >> 11) / Double(1 << 53) }
}
