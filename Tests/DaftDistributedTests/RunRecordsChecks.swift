import Foundation
import XCTest
import DaftTestSupport

/// Checks of a run's records (metrics.jsonl, tb/) used by the end-to-end runs.
enum RunRecordsChecks {
    static func records(_ runDirectory: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: runDirectory + "/metrics.jsonl", encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    /// A killed-and-resumed run's metrics.jsonl holds the uninterrupted run's records, in order, once each: the
    /// same kinds at the same steps with the same training numbers (the runs are bit-identical); only times differ.
    static func assertSameRecords(resumed: String, uninterrupted: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let a = try records(resumed), b = try records(uninterrupted)
        func key(_ r: [String: Any]) -> String { "\(r["kind"] ?? "?")@\(r["step"] ?? "?")" }
        XCTAssertEqual(a.map(key), b.map(key), "record sequence (kind@step) after kill + resume", file: file, line: line)
        let steps = a.filter { $0["kind"] as? String == "step" }.map { $0["step"] as! Int }
        XCTAssertEqual(steps, Array(Set(steps)).sorted(), "no duplicated or missing step records", file: file, line: line)
        for (x, y) in zip(a, b) {
            for k in ["loss", "accuracy", "train_loss", "train_accuracy", "val_accuracy", "mean_ood", "test_accuracy"] where y[k] != nil {
                XCTAssertEqual(x[k] as? Double, y[k] as? Double, "\(key(y)) \(k)", file: file, line: line)
            }
        }
    }

    /// TensorBoard's own EventAccumulator reads tb/ and finds exactly the scalars metrics.jsonl holds.
    static func assertTensorBoardMatchesMetrics(_ runDirectory: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let script = """
        import sys, json
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        acc = EventAccumulator(sys.argv[1] + "/tb", size_guidance={"scalars": 0})
        acc.Reload()
        print(json.dumps({t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}))
        """
        let out = try TestPython.run(script, [runDirectory])
        let tb = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: [[Double]]]
        // the scalars metrics.jsonl implies: every number of a record under "<kind>/<key>" ("train/" for steps)
        var expected: [String: [[Double]]] = [:]
        func add(_ tag: String, _ v: Any, _ step: Int) {
            if let o = v as? [String: Any] { for (k, x) in o { add(tag + "/" + k, x, step) } }
            else if let n = v as? NSNumber { expected[tag, default: []].append([Double(step), Double(Float(n.doubleValue))]) }
        }
        for r in try records(runDirectory) {
            let kind = r["kind"] as! String, step = r["step"] as! Int
            for (k, v) in r where !["kind", "step", "wall_time", "epoch", "step_in_epoch", "phase", "solver"].contains(k) {
                add((kind == "step" ? "train" : kind) + "/" + k, v, step)
            }
        }
        XCTAssertEqual(Set(tb.keys), Set(expected.keys), "TensorBoard tags", file: file, line: line)
        XCTAssertTrue(tb.keys.contains("train/loss") && tb.keys.contains("epoch/val_accuracy"), "\(tb.keys.sorted())", file: file, line: line)
        for (tag, values) in expected {
            XCTAssertEqual(tb[tag]?.map { $0[0] }, values.map { $0[0] }, "\(tag) steps", file: file, line: line)
            XCTAssertEqual(tb[tag]?.map { Float($0[1]) }, values.map { Float($0[1]) }, "\(tag) values", file: file, line: line)
        }
    }
}

