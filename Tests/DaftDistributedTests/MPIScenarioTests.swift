import Foundation
import XCTest
import DaftInterop
import DaftTestSupport

/// Runs `daft-transport scenario NAME` under real `mpirun` (2 and 3 ranks, --oversubscribe).
final class MPIScenarioTests: XCTestCase {
    // MARK: collectives

    func testAllReduceFloatDoubleInt64() throws {
        try expectOK("allreduce", ranks: 2)
        try expectOK("allreduce", ranks: 3)
    }

    func testNonBlockingAllReduce() throws {
        try expectOK("nonblocking", ranks: 2)
        try expectOK("nonblocking", ranks: 3)
    }

    func testBroadcast() throws {
        try expectOK("broadcast", ranks: 2)
        try expectOK("broadcast", ranks: 3)
    }

    func testAllGather() throws {
        try expectOK("allgather", ranks: 2)
        try expectOK("allgather", ranks: 3)
    }

    func testBarrier() throws {
        try expectOK("barrier", ranks: 3)
    }

    func testGradientBucketerEqualsAveragedAllReduce() throws {
        try expectOK("bucketer", ranks: 2)
        try expectOK("bucketer", ranks: 3)
    }

    // MARK: consistency check and watchdog

    func testConsistencyCheckNamesDivergedRank() throws {
        let two = try expectOK("consistency", ranks: 2)
        XCTAssertTrue(two.stdout.contains("diverged at step 7: rank(s) 1 "), two.stdout)
        let three = try expectOK("consistency", ranks: 3)
        XCTAssertTrue(three.stdout.contains("diverged at step 7: rank(s) 2 "), three.stdout)
    }

    func testWatchdogNamesTheRankThatDidNotArrive() throws {
        for (scenario, ranks) in [("stall", 2), ("stall", 3), ("stall-bucketer", 2)] {
            let started = Date()
            let run = try Harness.mpirun(scenario, ranks: ranks, environment: ["DAFT_STALL_TIMEOUT": "2"], timeout: 90)
            let elapsed = Date().timeIntervalSince(started)
            XCTAssertFalse(run.timedOut, "\(scenario) -np \(ranks) hung")
            XCTAssertNotEqual(run.status, 0, "\(scenario) -np \(ranks) must fail\n\(run.stderr)")
            XCTAssertTrue(run.stderr.contains("did not arrive: rank 1;"), "\(scenario) -np \(ranks) stderr:\n\(run.stderr)")
            XCTAssertTrue(run.stderr.contains("daft watchdog: collective #"), run.stderr)
            // Rank 1 sleeps 120 s: the job must end long before (timeout 2 s + grace + launch).
            XCTAssertLessThan(elapsed, 45, "\(scenario) -np \(ranks) took \(elapsed) s")
            if ranks == 3 { XCTAssertTrue(run.stderr.contains("waiting here: 0,2"), run.stderr) }
        }
    }

    /// A rank that stops after the gate of a gated all-reduce (the default on one node) leaves the others inside a
    /// blocking `MPI_Allreduce`: the gate watchdog thread ends them within the timeout (this hung for ever before).
    func testGateWatchdogEndsAllReduceBlockedAfterTheGate() throws {
        for ranks in [2, 3] {
            let started = Date()
            let run = try Harness.mpirun("stall-after-gate", ranks: ranks, environment: ["DAFT_STALL_TIMEOUT": "2", "DAFT_GATE_BYTES": "0"], timeout: 90)
            let elapsed = Date().timeIntervalSince(started)
            XCTAssertFalse(run.timedOut, "-np \(ranks) hung")
            XCTAssertEqual(run.status, 75, run.stderr)
            XCTAssertTrue(run.stderr.contains("inside MPI_Allreduce after every rank passed its gate; did not finish: "
                                              + (ranks == 2 ? "rank 1;" : "unknown")), "-np \(ranks):\n\(run.stderr)")
            XCTAssertLessThan(elapsed, 45, "-np \(ranks) took \(elapsed) s")
        }
    }

    func testWatchdogWhenRankZeroStalls() throws {
        let run = try Harness.mpirun("stall", ranks: 3, environment: ["DAFT_STALL_TIMEOUT": "2", "DAFT_TEST_STALL_RANK": "0"], timeout: 90)
        XCTAssertFalse(run.timedOut, "hung")
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("did not arrive: rank 0;"), run.stderr)
        XCTAssertTrue(run.stderr.contains("waiting here: 1,2"), run.stderr)
    }

    // MARK: single process vs mpirun -np 1

    func testSingleProcessMatchesMpirunNp1() throws {
        let binary = try Harness.transportBinary()
        let single = try Harness.run(binary.path, ["scenario", "compute"], environment: [:], timeout: 60)
        XCTAssertEqual(single.status, 0, single.stderr)
        XCTAssertTrue(single.stdout.contains("digest "), single.stdout)
        let mpi = try Harness.mpirun("compute", ranks: 1, timeout: 60)
        XCTAssertEqual(mpi.status, 0, mpi.stderr)
        XCTAssertEqual(Harness.lines(single.stdout, prefixes: ["step", "digest"]), Harness.lines(mpi.stdout, prefixes: ["step", "digest"]))
        XCTAssertFalse(Harness.lines(mpi.stdout, prefixes: ["digest"]).isEmpty)
    }

    @discardableResult
    private func expectOK(_ scenario: String, ranks: Int) throws -> Harness.Result {
        let run = try Harness.mpirun(scenario, ranks: ranks, timeout: 240)
        XCTAssertFalse(run.timedOut, "\(scenario) -np \(ranks) timed out")
        XCTAssertEqual(run.status, 0, "\(scenario) -np \(ranks) failed:\n\(run.stdout)\n\(run.stderr)")
        XCTAssertTrue(run.stdout.contains("ok \(scenario) (\(ranks) ranks)"), "\(scenario) -np \(ranks):\n\(run.stdout)\n\(run.stderr)")
        return run
    }
}

/// A scenario across two network-namespace "hosts" (real TCP between them), via cluster/netns.sh.
final class NetworkNamespaceTests: XCTestCase {
    let environment = [
        "DAFT_NETNS_PREFIX": "dafttest-h", "DAFT_NETNS_BRIDGE": "dafttestbr0", "DAFT_NETNS_NET": "10.231.7",
        "DAFT_NETNS_VETH": "dt", "DAFT_NETNS_STATE": "/run/daft-netns-test",
    ]
    var script: String { Harness.packageRoot.appendingPathComponent("cluster/netns.sh").path }

    override func setUpWithError() throws {
        try XCTSkipUnless(getuid() == 0, "network namespaces need root")
        let probe = try Harness.run("/bin/sh", ["-c", "command -v ip >/dev/null && ip netns list >/dev/null"], environment: [:], timeout: 10)
        try XCTSkipUnless(probe.status == 0, "`ip netns` is unavailable")
        _ = try Harness.mpirunPath()
    }

    override func tearDownWithError() throws {
        if getuid() == 0 { _ = try? Harness.run(script, ["down"], environment: environment, timeout: 30) }
    }

    func testTwoHostScenarioOverTCP() throws {
        let up = try Harness.run(script, ["up", "2"], environment: environment, timeout: 30)
        guard up.status == 0 else {
            throw XCTSkip("could not create network namespaces here: \(up.stderr)")
        }
        let binary = try Harness.transportBinary()
        let where_ = try Harness.run(script, ["run", "-n", "2", "--", "/bin/sh", "-c", "echo host=$(hostname) rank=$OMPI_COMM_WORLD_RANK"],
                                     environment: environment, timeout: 60)
        XCTAssertEqual(where_.status, 0, where_.stderr)
        XCTAssertTrue(where_.stdout.contains("host=dafttest-h1 rank=0"), where_.stdout)
        XCTAssertTrue(where_.stdout.contains("host=dafttest-h2 rank=1"), where_.stdout)
        for scenario in ["allreduce", "bucketer"] {
            let run = try Harness.run(script, ["run", "-n", "2", "--", binary.path, "scenario", scenario], environment: environment, timeout: 180)
            XCTAssertEqual(run.status, 0, "\(scenario) across namespaces:\n\(run.stdout)\n\(run.stderr)")
            XCTAssertTrue(run.stdout.contains("ok \(scenario) (2 ranks)"), run.stdout + run.stderr)
            XCTAssertTrue(run.stderr.contains("--mca btl tcp"), "the mpirun line is printed: \(run.stderr)")
        }
    }
}

extension NetworkNamespaceTests {
    /// A real fine-tuning run across 2 namespace "hosts" (1 rank each, TCP between them) gives the result of
    /// one local rank with the same global batch (SyncBN, gradient buckets, sampler all crossing the network).
    func testTwoHostTrainingEqualsOneRank() throws {
        let up = try Harness.run(script, ["up", "2"], environment: environment, timeout: 30)
        guard up.status == 0 else { throw XCTSkip("could not create network namespaces here: \(up.stderr)") }
        let daft = try Harness.binary("daft").path
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("daft-netns-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: work) }
        let export = try Harness.run(daft, ["data", "export", "--data", "fashion-mnist:target-train@id", "--limit", "48", "--out", work + "/data"],
                                     environment: [:], timeout: 120)
        XCTAssertEqual(export.status, 0, export.stderr)
        let pretrained = Harness.packageRoot.appendingPathComponent("pretrained/resnet20-fashion-source.safetensors").path
        let args = ["finetune", "--method", "daft", "--init", pretrained, "--data", "npy:\(work)/data/x.npy,\(work)/data/y.npy",
                    "--batch-size", "12", "--max-steps", "6", "--epochs", "2", "--lr-head", "0.1", "--lr-backbone", "0.001"]
        let local = try Harness.run(daft, args + ["--out", work + "/local"], environment: [:], timeout: 300)
        XCTAssertEqual(local.status, 0, local.stderr)
        let remote = try Harness.run(script, ["run", "-n", "2", "--", daft] + args + ["--out", work + "/hosts"], environment: environment, timeout: 300)
        XCTAssertEqual(remote.status, 0, remote.stdout + remote.stderr)
        let a = try SafeTensorsFile.read(URL(fileURLWithPath: work + "/hosts/final.safetensors"))
        let b = try SafeTensorsFile.read(URL(fileURLWithPath: work + "/local/final.safetensors"))
        for (name, t) in b.tensors where t.dtype == .F32 {
            let x = try a.tensors[name]!.floats(), y = try t.floats()
            let scale = max(y.map { abs($0) }.max() ?? 0, 1e-3)
            let diff = zip(x, y).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(diff / scale, 1e-5, "\(name) across 2 hosts vs 1 local rank")
        }
    }
}

/// Process plumbing for the MPI tests.
enum Harness {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var timedOut: Bool
    }

    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func mpirunPath() throws -> String {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let candidate = "\(dir)/mpirun"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw XCTSkip("mpirun is not installed (apt-get install openmpi-bin)")
    }

    /// The built `daft-transport`, next to the test bundle.
    static func transportBinary() throws -> URL { try binary("daft-transport") }

    /// A product built with the tests (`daft`, `daft-transport`): `DAFT_BIN_DIR` (the release build) or next to
    /// the test bundle.
    static func binary(_ name: String) throws -> URL { try BuiltProducts.url(name) }

    static func mpirun(_ scenario: String, ranks: Int, environment: [String: String] = [:], timeout: Double) throws -> Result {
        let mpirun = try mpirunPath()
        let binary = try transportBinary()
        var args = ["-np", "\(ranks)", "--oversubscribe", "--bind-to", "none", "-x", "OPENBLAS_NUM_THREADS=1"]
        for (k, v) in environment.sorted(by: { $0.key < $1.key }) { args += ["-x", "\(k)=\(v)"] }
        args += [binary.path, "scenario", scenario]
        return try run(mpirun, args, environment: environment, timeout: timeout)
    }

    static func run(_ executable: String, _ arguments: [String], environment: [String: String], timeout: Double) throws -> Result {
        try start(executable, arguments, environment: environment).finish(timeout: timeout)
    }

    /// A process started in the background, its output going to files until `finish`.
    struct Running {
        let process: Process
        let out: URL, err: URL
        let handles: [FileHandle]
        var pid: pid_t { process.processIdentifier }

        /// Waits (after `timeout` seconds: SIGTERM, then SIGKILL half a second later) and returns status and output.
        func finish(timeout: Double) throws -> Result {
            let deadline = Date().addingTimeInterval(timeout)
            var timedOut = false
            while process.isRunning {
                if Date() > deadline {
                    timedOut = true
                    kill(pid, SIGTERM)
                    usleep(500_000)
                    if process.isRunning { kill(pid, SIGKILL) }
                    break
                }
                usleep(10_000)
            }
            process.waitUntilExit()
            for handle in handles { try handle.close() }
            defer { try? FileManager.default.removeItem(at: out.deletingLastPathComponent()) }
            return Result(status: process.terminationStatus, stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                          stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "", timedOut: timedOut)
        }
    }

    /// Starts `executable arguments` with a clean MPI environment (no inherited `OMPI_`/`PMIX_` variables, root
    /// allowed, one BLAS thread) plus `environment`, and returns at once.
    static func start(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> Running {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for key in env.keys where key.hasPrefix("OMPI_") || key.hasPrefix("PMIX_") { env[key] = nil }
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        env["OPENBLAS_NUM_THREADS"] = "1"
        env.merge(environment) { $1 }
        process.environment = env
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("daft-mpi-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        let out = tmp.appendingPathComponent("out"), err = tmp.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        let outHandle = try FileHandle(forWritingTo: out), errHandle = try FileHandle(forWritingTo: err)
        process.standardOutput = outHandle
        process.standardError = errHandle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return Running(process: process, out: out, err: err, handles: [outHandle, errHandle])
    }

    static func lines(_ text: String, prefixes: [String]) -> [String] {
        text.split(separator: "\n").map(String.init).filter { line in prefixes.contains { line.hasPrefix($0) } }
    }
}
