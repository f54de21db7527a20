import Foundation
import XCTest
import DaftInterop
import DaftTestSupport

/// The door a PyTorch user walks through (issue 10, parts 1–2), with the release `daft` binary: torchvision
/// ResNet-18s saved by `safetensors.torch.save_file(model.state_dict())` with no metadata are evaluated,
/// converted and fine-tuned (2 ranks under mpirun); preprocessing comes from the model (ImageNet's for the
/// 3-channel 7×7 stem, `--mean/--std` otherwise, then the metadata daft writes) and every command agrees with
/// PyTorch computing the same loss; `final.safetensors` loads back with `load_state_dict(strict=True)`.
final class EndToEndTorchvisionWeightsTests: XCTestCase {
    static var work: URL!

    override class func setUp() {
        super.setUp()
        work = FileManager.default.temporaryDirectory.appendingPathComponent("daft-e2e-tv-\(UUID().uuidString)")
    }

    override class func tearDown() {
        try? FileManager.default.removeItem(at: work)
        super.tearDown()
    }

    func daft(_ args: [String], ranks: Int? = nil, expectFailure: Bool = false, file: StaticString = #filePath, line: UInt = #line) throws -> Harness.Result {
        let r = try EndToEndTrainingTests.launch(args, ranks: ranks, timeout: 600)
        if expectFailure {
            XCTAssertNotEqual(r.status, 0, "daft \(args.joined(separator: " ")) should fail", file: file, line: line)
        } else {
            XCTAssertEqual(r.status, 0, "daft \(args.joined(separator: " ")) failed:\n\(r.stdout.suffix(1500))\n\(r.stderr.suffix(1500))", file: file, line: line)
        }
        return r
    }

    /// The loss `daft evaluate --json` printed.
    func evaluatedLoss(_ r: Harness.Result) throws -> Double {
        let last = r.stdout.split(separator: "\n").last.map(String.init) ?? ""
        let o = try JSONSerialization.jsonObject(with: Data(last.utf8)) as! [String: Any]
        return o["loss"] as! Double
    }

    /// PyTorch's mean cross-entropy of `weights` (loaded strictly into torchvision's resnet18 with `channels`
    /// input channels) on the NPY data, normalised with `mean`/`std` (from the file's metadata when nil).
    func torchLoss(_ weights: URL, channels: Int, mean: [Double]?, std: [Double]?, data: URL) throws -> Double {
        let script = """
        import sys, json, numpy as np, torch, torch.nn as nn, torchvision
        from safetensors import safe_open
        from safetensors.torch import load_file
        path, channels, data, norm = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
        sd = load_file(path)
        meta = safe_open(path, "pt").metadata() or {}
        mean = norm["mean"] or [float(v) for v in meta["mean"].split(",")]
        std = norm["std"] or [float(v) for v in meta["std"].split(",")]
        m = torchvision.models.resnet18(num_classes=sd["fc.weight"].shape[0])
        m.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        m.load_state_dict(sd, strict=True)
        m.eval()
        x = torch.from_numpy(np.load(data + "/x.npy")).float() / 255
        if x.shape[1] != channels: x = x.expand(-1, channels, -1, -1)   # grey replicated, as convert('RGB')
        x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
        y = torch.from_numpy(np.load(data + "/y.npy")).long()
        with torch.no_grad():
            print(nn.functional.cross_entropy(m(x), y).item())
        """
        let norm = "{\"mean\": \(mean.map { "\($0)" } ?? "null"), \"std\": \(std.map { "\($0)" } ?? "null")}"
        let out = try TestPython.run(script, [weights.path, String(channels), data.path, norm])
        return Double(out.trimmingCharacters(in: .whitespacesAndNewlines))!
    }

    func assertLoss(_ ours: Double, _ torch: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertLessThanOrEqual(abs(ours - torch), 1e-4 * max(1, abs(torch)), "\(what): daft \(ours), PyTorch \(torch)", file: file, line: line)
    }

    func testEndToEndTorchvisionSavedResNet18sEvaluateConvertAndFineTuneLikePyTorch() throws {
        let dir = Self.work!
        let script = TestFixtures.directory.appendingPathComponent("torchvision/make_torchvision_files.py").path
        try TestPython.run("import runpy, sys; sys.argv = [\(String(reflecting: script))] + sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
                           [dir.path, "resnet18", "resnet18_1ch_100"])
        let rgb = dir.appendingPathComponent("resnet18.safetensors"), grey = dir.appendingPathComponent("resnet18_1ch_100.safetensors")
        let data = dir.appendingPathComponent("data")
        _ = try daft(["data", "export", "--data", "fashion-mnist:test", "--limit", "48", "--out", data.path])
        let spec = "npy:\(data.path)/x.npy,\(data.path)/y.npy"

        // inspect names the inferred architecture and the preprocessing that applies
        let inspect = try daft(["inspect", rgb.path]).stdout
        XCTAssertTrue(inspect.contains("architecture (from the tensors): resnet18: 7×7 stride-2 stem + 3×3 max-pool, BasicBlock, blocks 2,2,2,2, widths 64,128,256,512, 3 input channel(s), 1000 classes"), inspect)
        XCTAssertTrue(inspect.contains("preprocessing: mean 0.485,0.456,0.406, std 0.229,0.224,0.225 (ImageNet default)"), inspect)

        // 3-channel 7×7 stem, no metadata: ImageNet statistics, grey images replicated to RGB
        let rgbLoss = try evaluatedLoss(try daft(["evaluate", "--weights", rgb.path, "--data", spec, "--json"]))
        assertLoss(rgbLoss, try torchLoss(rgb, channels: 3, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], data: data), "resnet18 ImageNet default")

        // 1-channel, no metadata: every command asks for --mean/--std in one line
        for args in [["evaluate", "--weights", grey.path, "--data", spec],
                     ["convert-bn", "--weights", grey.path, "--data", spec, "--out", dir.appendingPathComponent("never.safetensors").path],
                     ["finetune", "--weights", grey.path, "--data", spec, "--out", dir.appendingPathComponent("never").path]] {
            let r = try daft(args, expectFailure: true)
            let lines = r.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(args[0]): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("\(grey.path): no mean/std in the weights' metadata and none given: pass --mean and --std"), "\(args[0]): \(r.stderr)")
        }
        let norm = ["--mean", "0.2860", "--std", "0.3530"]
        let greyLoss = try evaluatedLoss(try daft(["evaluate", "--weights", grey.path, "--data", spec, "--json"] + norm))
        assertLoss(greyLoss, try torchLoss(grey, channels: 1, mean: [0.2860], std: [0.3530], data: data), "1-channel resnet18 with --mean/--std")

        // convert-bn writes the preprocessing into the file: evaluate then needs no flags, and disagreeing flags are refused
        let converted = dir.appendingPathComponent("converted.safetensors")
        _ = try daft(["convert-bn", "--weights", grey.path, "--data", spec, "--batch-size", "16", "--out", converted.path] + norm)
        let convertedLoss = try evaluatedLoss(try daft(["evaluate", "--weights", converted.path, "--data", spec, "--json"]))
        assertLoss(convertedLoss, try torchLoss(converted, channels: 1, mean: nil, std: nil, data: data), "converted, metadata preprocessing")
        let clash = try daft(["evaluate", "--weights", converted.path, "--data", spec, "--mean", "0.5", "--std", "0.5"], expectFailure: true)
        XCTAssertTrue(clash.stderr.contains("disagree"), clash.stderr)

        // DAFT fine-tune on 2 ranks from the torchvision file; final.safetensors goes back into torchvision strictly
        let run = dir.appendingPathComponent("run")
        _ = try daft(["finetune", "--method", "daft", "--weights", grey.path, "--data", spec, "--epochs", "1", "--batch-size", "16",
                      "--lr-head", "0.1", "--lr-backbone", "0.001", "--out", run.path] + norm, ranks: 2)
        let final = run.appendingPathComponent("final.safetensors")
        let meta = try SafeTensorsFile.read(final).metadata
        XCTAssertEqual(meta["arch"], "resnet18"); XCTAssertEqual(meta["num_classes"], "10"); XCTAssertEqual(meta["in_channels"], "1")
        XCTAssertEqual(meta["mean"], "0.286"); XCTAssertEqual(meta["std"], "0.353")
        let finalLoss = try evaluatedLoss(try daft(["evaluate", "--weights", final.path, "--data", spec, "--json"]))
        assertLoss(finalLoss, try torchLoss(final, channels: 1, mean: nil, std: nil, data: data), "fine-tuned final.safetensors")
    }
}
