import Foundation
import XCTest
import DaftInterop
import DaftTestSupport

/// Image folders end to end with the release binary (issue 10, parts 3–5): torchvision `ImageFolder` layouts
/// written by `daft data export --format folder` (PNG, and JPEG for the shifted OOD copy) feed a torchvision-saved
/// ResNet-18 on 2 ranks under mpirun through torchvision's transforms; the run is killed and resumed bit for bit,
/// and `daft evaluate` on the OOD folder agrees with the run's own summary. A folder in native size trains exactly
/// like the NPY files it was exported from.
final class EndToEndImageFolderTests: XCTestCase {
    static var work: URL!

    override class func setUp() {
        super.setUp()
        work = FileManager.default.temporaryDirectory.appendingPathComponent("daft-e2e-folder-\(UUID().uuidString)")
    }

    override class func tearDown() {
        try? FileManager.default.removeItem(at: work)
        super.tearDown()
    }

    func daft(_ args: [String], ranks: Int? = nil, file: StaticString = #filePath, line: UInt = #line) throws -> Harness.Result {
        let r = try EndToEndTrainingTests.launch(args, ranks: ranks, timeout: 900)
        XCTAssertEqual(r.status, 0, "daft \(args.joined(separator: " ")) failed:\n\(r.stdout.suffix(1500))\n\(r.stderr.suffix(1500))", file: file, line: line)
        return r
    }

    func path(_ name: String) -> String { Self.work.appendingPathComponent(name).path }

    func export(_ data: String, limit: Int, to name: String, jpeg: Int? = nil) throws {
        _ = try daft(["data", "export", "--data", data, "--limit", String(limit), "--format", "folder", "--out", path(name)]
                     + (jpeg.map { ["--jpeg-quality", String($0)] } ?? []))
    }

    func testEndToEndTorchvisionResNet18OnImageFoldersKilledResumedAndEvaluated() throws {
        try FileManager.default.createDirectory(at: Self.work, withIntermediateDirectories: true)
        let script = TestFixtures.directory.appendingPathComponent("torchvision/make_torchvision_files.py").path
        try TestPython.run("import runpy, sys; sys.argv = [\(String(reflecting: script))] + sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
                           [path("weights"), "resnet18"])
        let weights = path("weights") + "/resnet18.safetensors"
        try export("fashion-mnist:target-train@id", limit: 96, to: "train")
        try export("fashion-mnist:target-val@id", limit: 48, to: "val")
        try export("fashion-mnist:test@blur", limit: 48, to: "ood-blur", jpeg: 85)
        // torchvision's recipe at 64 px: the 28-px images are upsampled (RandomResizedCrop / Resize(73) + CenterCrop(64))
        let common = ["finetune", "--method", "daft", "--weights", weights, "--data", "folder:" + path("train"),
                      "--val-data", "folder:" + path("val"), "--ood", "blur=folder:" + path("ood-blur"), "--image-size", "64",
                      "--batch-size", "16", "--epochs", "2", "--lr-head", "0.1", "--lr-backbone", "0.001",
                      "--checkpoint-every", "2", "--keep", "2", "--no-epoch-ood"]
        _ = try daft(common + ["--out", path("full")], ranks: 2)

        // the same run killed once a mid-run checkpoint exists, then resumed: bit-identical final weights
        let out = path("killed")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try Harness.mpirunPath())
        p.arguments = try EndToEndTrainingTests.mpirunArguments(ranks: 2, common + ["--out", out])
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        p.environment = env
        p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
        try p.run()
        let ckpts = out + "/checkpoints"
        let deadline = Date().addingTimeInterval(600)
        while Date() < deadline {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: ckpts)) ?? []
            if names.contains(where: { $0.hasPrefix("ckpt-") && (Int($0.dropFirst(5)) ?? 0) >= 6 && FileManager.default.fileExists(atPath: "\(ckpts)/\($0)/manifest.json") }) { break }
            usleep(20_000)
        }
        kill(p.processIdentifier, SIGKILL)
        _ = Glibc.system("pkill -9 -f 'daft finetune.*\(out)' >/dev/null 2>&1")
        p.waitUntilExit()
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/final.safetensors"), "the run finished before it was killed")
        let resumed = try daft(common + ["--out", out, "--resume", "auto"], ranks: 2)
        // it really resumed from a checkpoint (a fresh start would also end bit-identical)
        XCTAssertTrue(resumed.stdout.contains("resume: \(ckpts)/ckpt-"), resumed.stdout)
        let a = try SafeTensorsFile.read(URL(fileURLWithPath: out + "/final.safetensors"))
        let b = try SafeTensorsFile.read(URL(fileURLWithPath: path("full") + "/final.safetensors"))
        XCTAssertEqual(a.tensors, b.tensors, "kill + resume on image folders is bit-identical")
        XCTAssertEqual(a.metadata["mean"], "0.485,0.456,0.406", "ImageNet preprocessing for the 3-channel 7×7-stem model")

        // evaluate on the OOD folder with the selected weights = the run's own OOD number
        let results = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("full") + "/results.json"))) as! [String: Any]
        let runOOD = ((results["ood"] as! [String: Any])["blur"] as! [String: Any])["accuracy"] as! Double
        let selected = FileManager.default.fileExists(atPath: path("full") + "/best.safetensors") ? "best" : "final"
        let ev = try daft(["evaluate", "--weights", path("full") + "/\(selected).safetensors", "--data", "folder:" + path("ood-blur"),
                           "--image-size", "64", "--json"], ranks: 2)
        let last = ev.stdout.split(separator: "\n").last.map(String.init) ?? ""
        let o = try JSONSerialization.jsonObject(with: Data(last.utf8)) as! [String: Any]
        XCTAssertEqual(o["accuracy"] as? Double, runOOD, "evaluate on the JPEG OOD folder = the run's OOD accuracy")
        XCTAssertEqual(o["count"] as? Int, 48)
    }

    /// A small-image model reads a folder at the images' own size with daft's standard augmentation, so the folder
    /// exported (PNG, lossless) from NPY data trains to bit-identical weights as the NPY data itself.
    func testEndToEndNativeSizeFolderTrainsLikeTheDataItWasExportedFrom() throws {
        try FileManager.default.createDirectory(at: Self.work, withIntermediateDirectories: true)
        let committed = Harness.packageRoot.appendingPathComponent("pretrained/resnet20-fashion-source.safetensors").path
        _ = try daft(["data", "export", "--data", "fashion-mnist:target-train@id", "--limit", "64", "--out", path("npy")])
        try export("npy:\(path("npy"))/x.npy,\(path("npy"))/y.npy", limit: 64, to: "native")
        // ImageFolder order is class by class (file names keep the original order inside a class): the NPY
        // data in that order is what the folder must reproduce
        try TestPython.run("""
        import sys, numpy as np
        x, y = np.load(sys.argv[1] + "/x.npy"), np.load(sys.argv[1] + "/y.npy")
        order = np.argsort(y, kind="stable")
        np.save(sys.argv[1] + "/xs.npy", x[order]); np.save(sys.argv[1] + "/ys.npy", y[order])
        """, [path("npy")])
        let common = ["finetune", "--method", "ft", "--weights", committed, "--batch-size", "16", "--epochs", "1", "--lr", "0.01", "--no-epoch-ood"]
        _ = try daft(common + ["--data", "npy:\(path("npy"))/xs.npy,\(path("npy"))/ys.npy", "--out", path("from-npy")])
        _ = try daft(common + ["--data", "folder:" + path("native"), "--out", path("from-folder")])
        let a = try SafeTensorsFile.read(URL(fileURLWithPath: path("from-npy") + "/final.safetensors"))
        let b = try SafeTensorsFile.read(URL(fileURLWithPath: path("from-folder") + "/final.safetensors"))
        XCTAssertEqual(a.tensors, b.tensors, "folder (native size) ≡ NPY, bit for bit")
    }
}
