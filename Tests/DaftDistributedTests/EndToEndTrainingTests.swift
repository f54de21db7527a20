import Foundation
import XCTest
import DaftInterop

/// Heavy end-to-end runs of the `daft` executable under real `mpirun` (tiny data, narrow ResNet-20):
/// N ranks equal 1 rank, in-process equals `mpirun -np 1`, SIGKILL + resume is bit-identical,
/// resume across a phase boundary and onto more ranks, BN conversion on 2 ranks equals 1 rank, every
/// method under `mpirun -np 2` does what it is (conversion, zero head, frozen parts), and bad input or bad
/// data is one line on stderr before any step.
final class EndToEndTrainingTests: XCTestCase {
    static var work: URL!
    static var dataX = "", dataY = ""
    static var pretrained = ""
    /// Why the shared inputs could not be made; every test then fails with it (`setUpWithError`).
    static var setUpFailure: Error?

    /// Small shared inputs: 100 target images exported as NPY, and a narrow pretrained model.
    override class func setUp() {
        super.setUp()
        work = FileManager.default.temporaryDirectory.appendingPathComponent("daft-e2e-\(UUID().uuidString)")
        let data = work.appendingPathComponent("data"), pre = work.appendingPathComponent("pre")
        dataX = data.appendingPathComponent("x.npy").path
        dataY = data.appendingPathComponent("y.npy").path
        pretrained = pre.appendingPathComponent("final.safetensors").path
        do {
            try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
            try EndToEndTrainingTests.daft(["data", "export", "--data", "fashion-mnist:target-train@id", "--limit", "100", "--out", data.path])
            try EndToEndTrainingTests.daft(["pretrain", "--arch", "resnet20", "--widths", "4,8,16", "--data", "fashion-mnist:source", "--limit", "256",
                                            "--mean", "0.2860", "--std", "0.3530", "--batch-size", "32", "--max-steps", "8", "--epochs", "1", "--lr", "0.05", "--out", pre.path])
        } catch {
            setUpFailure = error
        }
    }

    /// A failed class set-up fails each test with its reason (instead of every test failing on a missing file).
    override func setUpWithError() throws {
        try super.setUpWithError()
        if let failure = Self.setUpFailure { throw failure }
    }

    override class func tearDown() {
        try? FileManager.default.removeItem(at: work)
        super.tearDown()
    }

    /// `mpirun` arguments that start `ranks` copies of the built `daft` (one BLAS thread each) before `args`.
    static func mpirunArguments(ranks: Int, _ args: [String]) throws -> [String] {
        ["-np", "\(ranks)", "--oversubscribe", "--bind-to", "none", "-x", "OPENBLAS_NUM_THREADS=1", try Harness.binary("daft").path] + args
    }

    /// Runs `daft args` alone or under `mpirun -np ranks`.
    static func launch(_ args: [String], ranks: Int?, timeout: Double) throws -> Harness.Result {
        if let ranks { return try Harness.run(try Harness.mpirunPath(), try mpirunArguments(ranks: ranks, args), environment: [:], timeout: timeout) }
        return try Harness.run(try Harness.binary("daft").path, args, environment: [:], timeout: timeout)
    }

    /// For class set-up (no test to fail yet): throws with stderr when `daft` does not exit 0.
    @discardableResult
    static func daft(_ args: [String], ranks: Int? = nil, timeout: Double = 300) throws -> Harness.Result {
        let r = try launch(args, ranks: ranks, timeout: timeout)
        if r.status != 0 || r.timedOut {
            throw NSError(domain: "daft", code: Int(r.status), userInfo: [NSLocalizedDescriptionKey: "daft \(args.joined(separator: " ")) failed: \(r.stderr.suffix(1000))"])
        }
        return r
    }

    /// Runs `daft` and fails the test with its output when it does not exit 0.
    @discardableResult
    func run(_ args: [String], ranks: Int? = nil, file: StaticString = #filePath, line: UInt = #line) throws -> Harness.Result {
        let r = try Self.launch(args, ranks: ranks, timeout: 600)
        XCTAssertEqual(r.status, 0, "daft \(args.joined(separator: " ")) (ranks \(ranks ?? 0)) failed:\n\(r.stdout.suffix(2000))\n\(r.stderr.suffix(2000))", file: file, line: line)
        return r
    }

    func tensors(_ path: String) throws -> SafeTensorsFile { try SafeTensorsFile.read(URL(fileURLWithPath: path)) }

    /// max over float tensors of max|a−b| / max(max|b|, 1e-3).
    func maxRelativeDifference(_ a: SafeTensorsFile, _ b: SafeTensorsFile) throws -> Double {
        XCTAssertEqual(Set(a.tensors.keys), Set(b.tensors.keys))
        var worst = 0.0
        for (k, ta) in a.tensors where ta.dtype == .F32 {
            let x = try ta.floats(), y = try b.tensors[k]!.floats()
            let scale = max(Double(y.map { abs($0) }.max() ?? 0), 1e-3)
            for i in 0..<x.count { worst = max(worst, Double(abs(x[i] - y[i])) / scale) }
        }
        return worst
    }

    func dir(_ name: String) -> String { Self.work.appendingPathComponent(name).path }

    /// 20 steps of FT (SyncBN in training mode) with a global batch of 12 on 100 samples: the epoch's last
    /// batch is short (4 samples; 3 ranks get 2/1/1). N ranks × B/N ≡ 1 rank × B within 1e-5 relative, and
    /// so do 2 ranks × 2 threads (`--threads 2`: each rank's 6 samples split over two compute threads).
    /// Uses the committed pretrained ResNet-20 at lr 1e-3. Float32 sums run in a different order on different
    /// rank counts (~1e-7 after one step, measured); training amplifies that: 4.5e-6 after 20 steps here, while
    /// a barely trained narrow net at lr 1e-2 reaches 1e-5 within 8 steps (measured) — chaos, not a bug.
    func testEndToEndSyncBNTwoAndThreeRanksEqualOneRank() throws {
        let committed = Harness.packageRoot.appendingPathComponent("pretrained/resnet20-fashion-source.safetensors").path
        let common = ["finetune", "--method", "ft", "--init", committed, "--data", "npy:\(Self.dataX),\(Self.dataY)",
                      "--batch-size", "12", "--max-steps", "20", "--epochs", "3", "--lr", "0.001", "--tail", "short", "--consistency-every", "5"]
        try run(common + ["--out", dir("sync1")], ranks: 1)
        try run(common + ["--out", dir("sync2")], ranks: 2)
        try run(common + ["--out", dir("sync3")], ranks: 3)
        try run(common + ["--out", dir("sync2x2"), "--threads", "2"], ranks: 2)
        let one = try tensors(dir("sync1") + "/final.safetensors")
        for n in ["sync2", "sync3", "sync2x2"] {
            let d = try maxRelativeDifference(try tensors(dir(n) + "/final.safetensors"), one)
            XCTAssertLessThan(d, 1e-5, "\(n) differs from 1 rank by \(d) (relative)")
            let nbt = try tensors(dir(n) + "/final.safetensors").tensors["bn1.num_batches_tracked"]!.int64s()[0]
            XCTAssertEqual(nbt, try one.tensors["bn1.num_batches_tracked"]!.int64s()[0])
        }
    }

    /// The in-process single-rank communicator computes bit-for-bit what `mpirun -np 1` computes.
    func testEndToEndInProcessEqualsMpirunNp1() throws {
        let common = ["finetune", "--method", "daft", "--init", Self.pretrained, "--data", "npy:\(Self.dataX),\(Self.dataY)",
                      "--batch-size", "16", "--max-steps", "6", "--epochs", "1"]
        try run(common + ["--out", dir("inproc")])
        try run(common + ["--out", dir("np1")], ranks: 1)
        XCTAssertEqual(try tensors(dir("inproc") + "/final.safetensors").tensors, try tensors(dir("np1") + "/final.safetensors").tensors)
    }

    /// SIGKILL of the whole mpirun job mid-epoch, then `--resume auto`: bit-identical final weights.
    func testEndToEndKillMidEpochThenResumeIsBitIdentical() throws {
        let common = ["finetune", "--method", "daft", "--init", Self.pretrained, "--data", "npy:\(Self.dataX),\(Self.dataY)",
                      "--val-data", "npy:\(Self.dataX),\(Self.dataY)", "--ood", "blur=npy:\(Self.dataX),\(Self.dataY)@blur", "--eval-limit", "32",
                      "--batch-size", "8", "--epochs", "3", "--checkpoint-every", "3", "--keep", "2", "--log-every", "1"]
        try run(common + ["--out", dir("full")], ranks: 2)
        // the interrupted run: kill -9 once a mid-epoch checkpoint exists
        let out = dir("killed")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try Harness.mpirunPath())
        p.arguments = try Self.mpirunArguments(ranks: 2, common + ["--out", out])
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        p.environment = env
        p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
        try p.run()
        let ckpts = URL(fileURLWithPath: out).appendingPathComponent("checkpoints")
        let deadline = Date().addingTimeInterval(300)
        while Date() < deadline {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: ckpts.path)) ?? []
            if names.contains(where: { $0.hasPrefix("ckpt-") && Int($0.dropFirst(5)).map { $0 >= 15 } == true }) { break }
            usleep(20_000)
        }
        kill(p.processIdentifier, SIGKILL)
        _ = Glibc.system("pkill -9 -f 'daft finetune.*\(out)' >/dev/null 2>&1")
        p.waitUntilExit()
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/final.safetensors"), "the run finished before it was killed")
        // damage the newest checkpoint (flip one byte of its weights): resume must say so and use the previous one
        let valid = try FileManager.default.contentsOfDirectory(atPath: ckpts.path)
            .filter { $0.hasPrefix("ckpt-") && FileManager.default.fileExists(atPath: ckpts.path + "/" + $0 + "/manifest.json") }.sorted()
        XCTAssertGreaterThanOrEqual(valid.count, 2, "\(valid)")
        let newest = ckpts.appendingPathComponent(valid.last!).appendingPathComponent("weights.safetensors")
        var bytes = try Data(contentsOf: newest)
        bytes[bytes.count - 5] ^= 0x40
        try bytes.write(to: newest)
        let resumed = try run(common + ["--out", out, "--resume", "auto"], ranks: 2)
        XCTAssertTrue(resumed.stdout.contains("resume: skipping"), resumed.stdout)
        XCTAssertTrue(resumed.stdout.contains(valid.last!) && resumed.stdout.contains("checksum"), resumed.stdout)
        XCTAssertTrue(resumed.stdout.contains("resume: \(ckpts.path)/\(valid[valid.count - 2])"), resumed.stdout)
        XCTAssertEqual(try tensors(out + "/final.safetensors").tensors, try tensors(dir("full") + "/final.safetensors").tensors)
        // the run records continue across the kill: no step duplicated or missing, TensorBoard reads the same numbers
        try RunRecordsChecks.assertSameRecords(resumed: out, uninterrupted: dir("full"))
        try RunRecordsChecks.assertTensorBoardMatchesMetrics(out)
    }

    /// Resume across the probe → train phase boundary (LP-FT), and from 1 rank onto 2 ranks.
    func testEndToEndResumeAcrossPhaseBoundaryAndOntoTwoRanks() throws {
        // the committed, well-trained ResNet-20: on the barely trained narrow net float-order differences between
        // rank counts grow chaotically (measured 4.8e-4 after 12 steps), which is not what this test is about
        let committed = Harness.packageRoot.appendingPathComponent("pretrained/resnet20-fashion-source.safetensors").path
        let common = ["finetune", "--method", "lp-ft", "--init", committed, "--data", "npy:\(Self.dataX),\(Self.dataY)", "--val-data", "npy:\(Self.dataX),\(Self.dataY)",
                      "--limit", "60", "--batch-size", "10", "--epochs", "2", "--checkpoint-every", "4", "--keep", "50", "--lr", "0.0003"]
        try run(common + ["--out", dir("lpft")], ranks: 1)
        let boundary = dir("lpft") + "/checkpoints/ckpt-000000000"   // written when the probe phase ended
        try run(common + ["--out", dir("lpft-phase"), "--resume", boundary], ranks: 1)
        XCTAssertEqual(try tensors(dir("lpft-phase") + "/final.safetensors").tensors, try tensors(dir("lpft") + "/final.safetensors").tensors)
        let mid = dir("lpft") + "/checkpoints/ckpt-000000004"   // mid-epoch 0 (6 steps per epoch)
        try run(common + ["--out", dir("lpft-2ranks"), "--resume", mid], ranks: 2)
        let d = try maxRelativeDifference(try tensors(dir("lpft-2ranks") + "/final.safetensors"), try tensors(dir("lpft") + "/final.safetensors"))
        // float sums run in another order on 2 ranks; over the remaining 8 LP-FT steps that grows to 1.3e-4
        // relative here (measured), so "within float tolerance" is 1e-3 — an error in state or sampling is O(1)
        XCTAssertLessThan(d, 1e-3, "1-rank checkpoint resumed on 2 ranks differs by \(d)")
    }

    /// BN conversion on 2 ranks equals 1 rank (global batches), and the converted model computes the same function.
    func testEndToEndConvertBNTwoRanksEqualsOneRank() throws {
        let common = ["convert-bn", "--init", Self.pretrained, "--data", "npy:\(Self.dataX),\(Self.dataY)", "--batch-size", "20"]
        try run(common + ["--out", dir("conv1.safetensors")], ranks: 1)
        try run(common + ["--out", dir("conv2.safetensors")], ranks: 2)
        let d = try maxRelativeDifference(try tensors(dir("conv2.safetensors")), try tensors(dir("conv1.safetensors")))
        XCTAssertLessThan(d, 1e-6)
        let before = try run(["evaluate", "--weights", Self.pretrained, "--data", "npy:\(Self.dataX),\(Self.dataY)", "--json"])
        let after = try run(["evaluate", "--weights", dir("conv1.safetensors"), "--data", "npy:\(Self.dataX),\(Self.dataY)", "--json"], ranks: 2)
        func json(_ s: String) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(s.split(separator: "\n").last!.utf8)) as! [String: Any]
        }
        let a = try json(before.stdout), b = try json(after.stdout)
        XCTAssertEqual(a["accuracy"] as! Double, b["accuracy"] as! Double)
        XCTAssertEqual(a["loss"] as! Double, b["loss"] as! Double, accuracy: 1e-5)
        XCTAssertEqual(b["count"] as! Int, 100)
    }

    /// Incremental ridge head (method.md §6): statistics of domain A, then domain B added with --ridge-base,
    /// equal the joint solve over A ∪ B (same λ grid, same validation set), on 2 ranks.
    func testEndToEndIncrementalRidgeEqualsJointSolve() throws {
        let a = dir("ridge-a"), b = dir("ridge-b"), joint = dir("ridge-joint")
        try run(["data", "export", "--data", "fashion-mnist:target-train@id", "--limit", "60", "--out", a + "-data"])
        try run(["data", "export", "--data", "fashion-mnist:target-val@rotate", "--limit", "40", "--out", b + "-data"])
        // the union as one NPY data set
        let xa = try NpyArray.read(URL(fileURLWithPath: a + "-data/x.npy")), xb = try NpyArray.read(URL(fileURLWithPath: b + "-data/x.npy"))
        let ya = try NpyArray.read(URL(fileURLWithPath: a + "-data/y.npy")), yb = try NpyArray.read(URL(fileURLWithPath: b + "-data/y.npy"))
        try FileManager.default.createDirectory(atPath: joint + "-data", withIntermediateDirectories: true)
        try NpyArray(uint8s: try xa.uint8s() + xb.uint8s(), shape: [100] + Array(xa.shape.dropFirst())).write(to: URL(fileURLWithPath: joint + "-data/x.npy"))
        try NpyArray(int64s: try ya.int64s() + yb.int64s(), shape: [100]).write(to: URL(fileURLWithPath: joint + "-data/y.npy"))
        let common = ["finetune", "--method", "lp", "--lp-solver", "ridge", "--init", Self.pretrained,
                      "--val-data", "npy:\(Self.dataX),\(Self.dataY)", "--batch-size", "16"]
        try run(common + ["--data", "npy:\(a)-data/x.npy,\(a)-data/y.npy", "--out", a], ranks: 2)
        try run(common + ["--data", "npy:\(b)-data/x.npy,\(b)-data/y.npy", "--ridge-base", a + "/ridge.safetensors", "--out", b], ranks: 2)
        try run(common + ["--data", "npy:\(joint)-data/x.npy,\(joint)-data/y.npy", "--out", joint], ranks: 2)
        let inc = try tensors(b + "/ridge.safetensors"), all = try tensors(joint + "/ridge.safetensors")
        for name in all.tensors.keys.sorted() where all.tensors[name]!.dtype == .F64 {
            let x = try inc.tensors[name]!.doubles(), y = try all.tensors[name]!.doubles()
            let scale = max(y.map { abs($0) }.max() ?? 0, 1e-12)
            let diff = zip(x, y).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(diff / scale, 1e-6, "ridge statistic \(name)")  // float32 features, float64 sums
        }
        let d = try maxRelativeDifference(try tensors(b + "/final.safetensors"), try tensors(joint + "/final.safetensors"))
        XCTAssertLessThan(d, 1e-4, "incremental head differs from the joint head by \(d)")
    }

    /// Bad input: one line on stderr naming the file or flag and what is wrong, non-zero exit, no crash; bad data
    /// (a NaN pixel, a label the head does not have) is caught before any step.
    func testEndToEndBadInputGivesOneLineErrors() throws {
        let bin = try Harness.binary("daft").path
        let data = "npy:\(Self.dataX),\(Self.dataY)"
        // the same 100 images as float32 in [0, 1], with a NaN in image 7
        let nanX = dir("bad-nan-x.npy")
        var pixels = try NpyArray.read(URL(fileURLWithPath: Self.dataX)).uint8s().map { Float($0) / 255 }
        pixels[7 * 784 + 100] = .nan
        try NpyArray(floats: pixels, shape: [100, 1, 28, 28]).write(to: URL(fileURLWithPath: nanX))
        // a model whose head has 5 classes, and the first of the data's labels it does not have
        let fiveClasses = dir("bad-five-classes.safetensors")
        var pre = try tensors(Self.pretrained)
        let features = pre.tensors["fc.weight"]!.shape[1]
        pre.tensors["fc.weight"] = SafeTensor(floats: Array(try pre.tensors["fc.weight"]!.floats()[..<(5 * features)]), shape: [5, features])
        pre.tensors["fc.bias"] = SafeTensor(floats: Array(try pre.tensors["fc.bias"]!.floats()[..<5]), shape: [5])
        pre.metadata["num_classes"] = "5"
        try pre.write(to: URL(fileURLWithPath: fiveClasses))
        let labels = try NpyArray.read(URL(fileURLWithPath: Self.dataY)).int64s()
        let outside = try XCTUnwrap(labels.firstIndex { $0 >= 5 })
        let outsideHead = ["\(Self.dataY): label \(labels[outside]) at index \(outside) is outside the head of the model", "5 classes"]

        let aStep = ["--batch-size", "16", "--max-steps", "1"]   // without the check, these runs would reach a step
        let cases: [([String], [String])] = [
            (["finetune", "--init", "/nonexistent/w.safetensors", "--data", data, "--out", dir("bad1")], ["/nonexistent/w.safetensors"]),
            (["finetune", "--method", "magic", "--init", Self.pretrained, "--data", data], ["unknown --method 'magic'"]),
            (["finetune", "--init", Self.dataX, "--data", data, "--out", dir("bad2")], [Self.dataX]),
            (["finetune", "--init", Self.pretrained, "--data", "npy:/nonexistent/x.npy,/nonexistent/y.npy"], ["/nonexistent/x.npy"]),
            (["finetune", "--init", Self.pretrained, "--data", "fashion-mnist:nosuchsplit"], ["nosuchsplit"]),
            (["bench", "--arch", "resnet99"], ["unknown --arch 'resnet99'"]),
            (["bench-conv", "--paths", "sgemm,winograd"], ["unknown path 'winograd'", "sgemm, direct"]),
            (["bench-conv", "--kernel", "1", "--paths", "sgemm,direct"], ["direct kernels run 3×3 stride-1 padding-1", "not 1×1"]),
            (["bench-conv", "--kernel", "7", "--padding", "0", "--size", "5", "--paths", "sgemm"], ["7×7 kernel with padding 0 does not fit a 5×5 input"]),
            (["pretrain", "--augment", "heavy", "--data", data, "--out", dir("bad-aug")] + aStep, ["--augment must be standard or robust, got 'heavy'"]),
            (["pretrain", "--augment", "robust", "--no-augment", "--data", data, "--out", dir("bad-aug2")] + aStep, ["--no-augment and --augment robust contradict"]),
            (["evaluate", "--weights", Self.pretrained, "--data", data, "--bn-stats", "target"], ["--bn-stats must be own, source or mix:α"]),
            // an unknown stage used to train everything silently
            (["finetune", "--method", "freeze", "--unfreeze-from", "layer9", "--init", Self.pretrained, "--data", data, "--val-data", data,
              "--out", dir("bad-stage")] + aStep, ["--unfreeze-from 'layer9'", "layer1…layer3, fc"]),
            // NaN in float NPY images: the file, the image and the element
            (["finetune", "--init", Self.pretrained, "--data", "npy:\(nanX),\(Self.dataY)", "--out", dir("bad-nan")] + aStep,
             [nanX, "image 7, element 100", "not finite"]),
            // labels outside the head: a new head of --num-classes 5, and a kept head of 5 classes (evaluate)
            (["finetune", "--method", "ft", "--num-classes", "5", "--init", Self.pretrained, "--data", data, "--out", dir("bad-classes")] + aStep,
             outsideHead),
            (["evaluate", "--weights", fiveClasses, "--data", data], outsideHead),
        ]
        for (args, needles) in cases {
            let r = try Harness.run(bin, args, environment: [:], timeout: 120)
            XCTAssertNotEqual(r.status, 0, "\(args) should fail")
            let lines = r.stderr.split(separator: "\n").filter { !$0.isEmpty }
            XCTAssertEqual(lines.count, 1, "\(args): expected one line, got:\n\(r.stderr)")
            for needle in needles { XCTAssertTrue(r.stderr.contains(needle), "\(args): '\(needle)' not in: \(r.stderr)") }
            for work in ["convert-bn:", "probe", "epoch 0 step", "checkpoint:"] {   // nothing ran before the error
                XCTAssertFalse(r.stdout.contains(work), "\(args): '\(work)' before failing:\n\(r.stdout)")
            }
        }
        // the control: the 5-class head evaluates the samples whose labels it has
        let kept = labels.indices.filter { labels[$0] < 5 }
        let images = try NpyArray.read(URL(fileURLWithPath: Self.dataX)).uint8s()
        try NpyArray(uint8s: kept.flatMap { images[($0 * 784)..<(($0 + 1) * 784)] }, shape: [kept.count, 1, 28, 28])
            .write(to: URL(fileURLWithPath: dir("five-x.npy")))
        try NpyArray(int64s: kept.map { labels[$0] }, shape: [kept.count]).write(to: URL(fileURLWithPath: dir("five-y.npy")))
        let r = try Harness.run(bin, ["evaluate", "--weights", fiveClasses, "--data", "npy:\(dir("five-x.npy")),\(dir("five-y.npy"))", "--json"],
                                environment: [:], timeout: 120)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("\"count\":\(kept.count)"), r.stdout)
    }

    /// Every method (and the ablations) runs end to end under mpirun -np 2 on a tiny subset, and its outputs show
    /// what the method is. `reference.safetensors` of the newest checkpoint is the model fine-tuning started from
    /// (after conversion and probe), `final.safetensors` where it ended:
    /// - BN conversion (daft, lp-ft+conversion, conversion-only): every running mean and variance of the start
    ///   differs from the pretrained file's; every other method starts from the pretrained statistics bit for bit;
    /// - zero head (daft, conversion-only, fast-head-only): the start's fc.weight and fc.bias are all zero; every
    ///   other method starts from a non-zero head (nn.Linear's init, or the probe's);
    /// - lp: every backbone tensor of the final model is the pretrained one, bit for bit;
    /// - freeze (--unfreeze-from layer3): stem, layer1 and layer2 end bit-identical to the pretrained model, and
    ///   layer3 moves;
    /// - every other method moves the stem convolution, and moves the BN running statistics except LP-FT, whose
    ///   BN stays in evaluation behaviour (its final statistics are the pretrained ones).
    func testEndToEndEveryMethodUnderTwoRanks() throws {
        let pretrained = try tensors(Self.pretrained)
        let runningStatistics = pretrained.tensors.keys.filter { $0.hasSuffix(".running_mean") || $0.hasSuffix(".running_var") }.sorted()
        XCTAssertGreaterThan(runningStatistics.count, 10)
        let converting: Set<String> = ["daft", "lp-ft+conversion", "conversion-only"]
        let zeroHead: Set<String> = ["daft", "conversion-only", "fast-head-only"]
        let runs: [(String, [String])] = ["ft", "lp", "lp-ft", "daft", "lp-ft+conversion", "conversion-only", "fast-head-only", "freeze"].map { ($0, []) }
            + [("daft", ["--prior", "l2sp+feature", "--prior-layers", "layer2,penultimate"]), ("lp-ft", ["--lp-solver", "ridge"])]
        for (m, extra) in runs {
            let out = dir("m-\(m)\(extra.count)"), what = "\(m) \(extra)"
            let r = try run(["finetune", "--method", m] + extra + ["--init", Self.pretrained, "--data", "npy:\(Self.dataX),\(Self.dataY)",
                             "--val-data", "npy:\(Self.dataX),\(Self.dataY)", "--ood", "same=npy:\(Self.dataX),\(Self.dataY)",
                             "--batch-size", "16", "--max-steps", "3", "--epochs", "1", "--lr", "0.001", "--out", out], ranks: 2)
            XCTAssertTrue(r.stdout.contains("summary: method \(m)"), "\(what): \(r.stdout.suffix(500))")
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/results.json"), what)
            let start = try tensors(try newestCheckpoint(out) + "/reference.safetensors")
            let final = try tensors(out + "/final.safetensors")
            func floats(_ file: SafeTensorsFile, _ name: String) throws -> [Float] {
                try XCTUnwrap(file.tensors[name], "\(what): no tensor \(name)").floats()
            }

            for name in runningStatistics {
                let unchanged = try floats(start, name) == floats(pretrained, name)
                XCTAssertEqual(unchanged, !converting.contains(m),
                               "\(what): \(name) at the start of fine-tuning is \(unchanged ? "the pretrained one" : "not the pretrained one")")
            }
            let head = try floats(start, "fc.weight") + floats(start, "fc.bias")
            XCTAssertEqual(head.allSatisfy { $0 == 0 }, zeroHead.contains(m), "\(what): head at the start of fine-tuning")

            let backbone = pretrained.tensors.keys.filter { !$0.hasPrefix("fc.") }.sorted()
            switch m {
            case "lp":
                for name in backbone { XCTAssertEqual(final.tensors[name], pretrained.tensors[name], "\(what): LP changed backbone tensor \(name)") }
            case "freeze":
                for name in backbone {
                    let frozen = name.hasPrefix("conv1.") || name.hasPrefix("bn1.") || name.hasPrefix("layer1.") || name.hasPrefix("layer2.")
                    if frozen { XCTAssertEqual(final.tensors[name], pretrained.tensors[name], "\(what): frozen \(name) changed") }
                }
                XCTAssertNotEqual(try floats(final, "layer3.0.conv1.weight"), try floats(pretrained, "layer3.0.conv1.weight"), "\(what): layer3 did not train")
            default:
                XCTAssertNotEqual(try floats(final, "conv1.weight"), try floats(start, "conv1.weight"), "\(what): the backbone did not train")
                let statisticsMoved = try runningStatistics.contains { try floats(final, $0) != floats(start, $0) }
                XCTAssertEqual(statisticsMoved, m != "lp-ft", "\(what): BN running statistics \(statisticsMoved ? "moved" : "stayed") while fine-tuning")
            }
        }
    }
}
