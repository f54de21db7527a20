import Foundation
import XCTest
import DaftInterop

/// What each method does to the starting model, end to end: the distortion / parameter-distance reference
/// (method.md §8) is the initial, post-conversion model for every method — LP changes no feature, so its run
/// must report distortion L2 0, cosine 1 and a zero distance for every backbone tensor (regression: LP used to
/// be measured against a freshly built network); BN behaviour while fine-tuning; the probe's need for ID val.
extension EndToEndTrainingTests {
    /// The newest checkpoint directory (by step) under a run's `checkpoints/`.
    func newestCheckpoint(_ out: String) throws -> String {
        let root = out + "/checkpoints"
        let names = try FileManager.default.contentsOfDirectory(atPath: root).filter { $0.hasPrefix("ckpt-") }.sorted()
        return root + "/" + (try XCTUnwrap(names.last, "no checkpoint under \(root)"))
    }

    func testEndToEndDistortionReferenceIsTheStartingModelForEveryMethod() throws {
        let initFile = try tensors(Self.pretrained)
        let data = "npy:\(Self.dataX),\(Self.dataY)"
        let converting: Set<String> = ["daft", "lp-ft+conversion", "conversion-only"]
        let runs: [(String, [String])] = ["ft", "lp", "lp-ft", "daft", "lp-ft+conversion", "conversion-only", "fast-head-only", "freeze"].map { ($0, []) }
            + [("lp", ["--lp-solver", "ridge"])]
        for (method, extra) in runs {
            let out = dir("ref-\(method)\(extra.count)")
            try run(["finetune", "--method", method] + extra + ["--init", Self.pretrained, "--data", data, "--val-data", data,
                     "--test-data", data, "--batch-size", "16", "--max-steps", "2", "--epochs", "1", "--lr", "0.001",
                     "--unfreeze-from", "layer3", "--out", out])
            let reference = try tensors(try newestCheckpoint(out) + "/reference.safetensors")
            for (name, t) in initFile.tensors where !name.hasPrefix("fc.") && t.dtype == .F32 {
                let ref = try XCTUnwrap(reference.tensors[name], "\(method): reference lacks \(name)")
                let isBN = name.hasPrefix("bn") || name.contains(".bn") || name.contains("downsample.1")
                if converting.contains(method) && isBN { continue }  // the conversion rewrites BN tensors
                XCTAssertEqual(try ref.floats(), try t.floats(), "\(method) \(extra): reference \(name) is not the starting model's")
            }
            if converting.contains(method) {
                let a = try reference.tensors["bn1.running_mean"]!.floats(), b = try initFile.tensors["bn1.running_mean"]!.floats()
                XCTAssertNotEqual(a, b, "\(method): reference should carry the converted (target) BN statistics")
            }
            // BN behaviour while fine-tuning (method.md §4): LP-FT keeps the running statistics frozen, every other
            // fine-tuning method (LP-FT + conversion included) runs BN in training mode, so they move
            if method != "lp" {
                let final = try tensors(out + "/final.safetensors")
                let bn = "layer3.0.bn1.running_mean"  // trained by every method, freeze (from layer3) included
                let moved = try final.tensors[bn]!.floats() != reference.tensors[bn]!.floats()
                XCTAssertEqual(moved, method != "lp-ft", "\(method): BN running statistics \(moved ? "moved" : "stayed") during fine-tuning")
            }
            // start.safetensors (what `evaluate --bn-stats` reads) is that reference and names the pretrained file
            let start = try tensors(out + "/start.safetensors")
            XCTAssertEqual(start.tensors, reference.tensors, "\(method): start.safetensors is not the checkpoint's reference")
            XCTAssertEqual(start.metadata["daft_init"], Self.pretrained)
            if method == "daft" || method == "ft" || method == "lp-ft" { try checkEvaluationStatistics(out: out, method: method, data: data) }
            let results = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/results.json"))) as! [String: Any]
            if method == "lp" {
                let d = try XCTUnwrap(results["distortion"] as? [String: Any], "lp \(extra): no distortion in results.json")
                XCTAssertEqual(d["l2Mean"] as? Double, 0, "lp \(extra): features moved")
                XCTAssertEqual(d["cosineMean"] as? Double ?? 0, 1, accuracy: 1e-6, "lp \(extra): cosine")
                let distances = try XCTUnwrap(results["parameterDistance"] as? [String: Double])
                XCTAssertFalse(distances.isEmpty)
                for (name, v) in distances where !name.hasPrefix("fc.") {
                    XCTAssertEqual(v, 0, "lp \(extra): backbone tensor \(name) reported as moved")
                }
            }
        }
    }

    /// `daft evaluate --bn-stats`: mix:0 is the model's own statistics exactly; source differs from own for methods
    /// whose statistics moved (DAFT, FT) and equals it for LP-FT (statistics frozen, nothing to restore); a missing
    /// start model is a one-line error.
    func checkEvaluationStatistics(out: String, method: String, data: String) throws {
        func evaluate(_ policy: String, _ extra: [String] = []) throws -> [String: Any] {
            let r = try run(["evaluate", "--weights", out + "/final.safetensors", "--data", data, "--bn-stats", policy, "--json"] + extra)
            let json = try XCTUnwrap(r.stdout.split(separator: "\n").last, r.stdout)
            return try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
        }
        let own = try evaluate("own"), zero = try evaluate("mix:0"), source = try evaluate("source")
        // a checkpoint directory carries its start model (reference.safetensors, naming the pretrained file): the
        // newest checkpoint holds the final weights, so source evaluates the same there
        let r = try run(["evaluate", "--weights", try newestCheckpoint(out), "--data", data, "--bn-stats", "source", "--json"])
        let fromCheckpoint = try JSONSerialization.jsonObject(with: Data(try XCTUnwrap(r.stdout.split(separator: "\n").last).utf8)) as! [String: Any]
        XCTAssertEqual(fromCheckpoint["loss"] as? Double, source["loss"] as? Double, "\(method): source from the checkpoint directory")
        // --data repeats: one JSON record per data set, in order
        let twice = try run(["evaluate", "--weights", out + "/final.safetensors", "--data", data, "--data", data + "@clean", "--json"])
        XCTAssertEqual(twice.stdout.split(separator: "\n").filter { $0.hasPrefix("{") }.count, 2, twice.stdout)
        XCTAssertEqual(zero["loss"] as? Double, own["loss"] as? Double, "\(method): mix:0 is own")
        XCTAssertEqual(source["bn_stats"] as? String, "source")
        if method == "lp-ft" {
            XCTAssertEqual(source["loss"] as! Double, own["loss"] as! Double, accuracy: 1e-6, "lp-ft: source statistics are its own")
        } else {
            XCTAssertNotEqual(source["loss"] as? Double, own["loss"] as? Double, "\(method): restoring the source statistics changed nothing")
        }
        let missing = try Harness.run(try Harness.binary("daft").path, ["evaluate", "--weights", out + "/final.safetensors", "--data", data,
                                                                        "--bn-stats", "mix:0.5", "--start", out + "/nothing.safetensors"],
                                      environment: [:], timeout: 60)
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("\(out)/nothing.safetensors: no start model for --bn-stats mix:0.5"), missing.stderr)
    }

    /// `--augment robust` reaches the training batches (the weights differ from the standard recipe's after two
    /// steps), is deterministic (two runs are bit-identical) and is recorded in the checkpoint's options.
    func testEndToEndRobustAugmentationTrainsDifferentlyAndReproducibly() throws {
        let data = "npy:\(Self.dataX),\(Self.dataY)"
        func pretrain(_ name: String, _ extra: [String]) throws -> SafeTensorsFile {
            let out = dir(name)
            try run(["pretrain", "--arch", "resnet20", "--widths", "4,8,16", "--data", data, "--batch-size", "16", "--max-steps", "2",
                     "--epochs", "1", "--seed", "3", "--mean", "0.286", "--std", "0.353", "--out", out] + extra)
            return try tensors(out + "/final.safetensors")
        }
        let standard = try pretrain("aug-standard", []), robust = try pretrain("aug-robust", ["--augment", "robust"])
        XCTAssertEqual(try pretrain("aug-robust-again", ["--augment", "robust"]).tensors, robust.tensors, "robust augmentation is deterministic")
        XCTAssertNotEqual(robust.tensors["conv1.weight"], standard.tensors["conv1.weight"], "--augment robust changed nothing")
        let trainer = try String(contentsOfFile: try newestCheckpoint(dir("aug-robust")) + "/trainer.json", encoding: .utf8)
        XCTAssertTrue(trainer.contains("\"augmentation\":\"robust\"") || trainer.contains("\"augmentation\" : \"robust\""), trainer)
    }

    /// Probing methods choose their regularisation on ID validation: without --val-data they stop with one line
    /// naming the flag (they used to choose on the training set silently).
    func testEndToEndProbeWithoutValidationSetIsAnError() throws {
        for method in ["lp", "lp-ft", "freeze"] {
            let r = try Harness.run(try Harness.binary("daft").path, ["finetune", "--method", method, "--init", Self.pretrained,
                                    "--data", "npy:\(Self.dataX),\(Self.dataY)", "--out", dir("noval-\(method)")], environment: [:], timeout: 120)
            XCTAssertNotEqual(r.status, 0, "\(method) without --val-data should fail")
            let lines = r.stderr.split(separator: "\n").filter { !$0.isEmpty }
            XCTAssertEqual(lines.count, 1, "\(method): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("--val-data"), "\(method): \(r.stderr)")
        }
    }
}
