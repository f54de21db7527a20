import XCTest
@testable import DaftReport

/// `daft report`'s page from hand-written run directories: every chart of a finished run, the comparison of
/// several, what missing pieces render as, one-line errors for bad input, and the chart helpers.
final class ReportPageTests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("daft-report-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    /// A run directory with these metrics.jsonl records (then `tail` verbatim) and results.json.
    @discardableResult
    func writeRun(_ name: String, metrics: [[String: Any]]?, results: [String: Any]?, tail: String = "") throws -> String {
        let dir = root.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        if let metrics {
            let lines = try metrics.map { String(decoding: try JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]), as: UTF8.self) + "\n" }
            try Data((lines.joined() + tail).utf8).write(to: dir.appendingPathComponent("metrics.jsonl"))
        }
        if let results { try JSONSerialization.data(withJSONObject: results).write(to: dir.appendingPathComponent("results.json")) }
        return dir.path
    }

    /// The records of a fine-tuning run: 3 epochs of 4 steps, a step record every 2 steps, two OOD sets.
    func fineTuneMetrics(lrHead: Double, lrBackbone: Double) -> [[String: Any]] {
        var records: [[String: Any]] = [["kind": "phase", "phase": "convert-bn", "step": 0, "batches": 4]]
        for epoch in 0..<3 {
            let lr: [String: Any] = ["head": lrHead / Double(epoch + 1), "backbone": lrBackbone / Double(epoch + 1)]
            for s in [2, 4] {
                let step = epoch * 4 + s
                records.append(["kind": "step", "step": step, "epoch": epoch, "step_in_epoch": s, "loss": 2.3 - 0.1 * Double(step),
                                "accuracy": 0.1 + 0.05 * Double(step), "lr": lr, "images_per_s": 300.0, "data_wait_ms": 0.1, "collective_ms": 0.01])
            }
            records.append(["kind": "epoch", "step": epoch * 4 + 4, "epoch": epoch, "train_loss": 2.0 - 0.3 * Double(epoch),
                            "train_accuracy": 0.3 + 0.1 * Double(epoch), "val_accuracy": 0.4 + 0.1 * Double(epoch),
                            "ood": ["blur": 0.3, "rotate": 0.2], "mean_ood": 0.25, "distortion": ["l2": 1.0 + Double(epoch), "cosine": 0.9], "lr": lr])
        }
        return records
    }

    /// A results.json: a histogram over the daft bins (0, 10^(k/20)) with samples in three bins, per-tensor distances.
    func results(method: String, val: Double, test: Double, ood: [String: Double]) -> [String: Any] {
        let edges = [0.0] + (-60...60).map { pow(10, Double($0) / 20) }
        var counts = [Int](repeating: 0, count: edges.count)
        counts[61] = 5; counts[62] = 9; counts[66] = 2
        return ["method": method, "worldSize": 2, "steps": 12, "bestEpoch": 2, "seconds": 12.5, "valAccuracy": val,
                "test": ["accuracy": test, "loss": 1.0, "count": 16],
                "ood": ood.mapValues { ["accuracy": $0, "loss": 2.0, "count": 16] },
                "meanOOD": ood.isEmpty ? NSNull() : ood.values.reduce(0, +) / Double(ood.count),
                "distortion": ["l2Mean": 1.3, "l2Std": 0.4, "cosineMean": 0.97, "cosineStd": 0.01, "count": 16,
                               "l2Histogram": ["lowerEdges": edges, "counts": counts]],
                "parameterDistance": ["conv1.weight": 0.1, "bn1.weight": 0.2, "bn1.running_mean": 0.5, "layer1.0.conv1.weight": 0.3,
                                      "layer2.0.downsample.0.weight": 0.4, "layer2.0.downsample.1.running_var": 0.6, "layer10.0.conv1.weight": 0.05,
                                      "fc.weight": 0.9, "fc.bias": 0.7],
                "history": []]
    }

    func charts(_ html: String, _ id: String) -> Int { html.components(separatedBy: "data-chart=\"\(id)\"").count - 1 }

    func render(_ dirs: [String]) throws -> String {
        var runs: [ReportRun] = []
        for (d, label) in zip(dirs, ReportRun.uniqueLabels(dirs)) { var r = try ReportRun.load(d); r.label = label; runs.append(r) }
        return ReportPage.render(runs: runs)
    }

    func testTwoFinishedRunsGiveTableScatterAndEveryChart() throws {
        let a = try writeRun("daft-run", metrics: fineTuneMetrics(lrHead: 0.3, lrBackbone: 0.01),
                             results: results(method: "daft", val: 0.6, test: 0.625, ood: ["blur": 0.3125, "rotate": 0.1875]))
        let b = try writeRun("ft-run", metrics: fineTuneMetrics(lrHead: 0.01, lrBackbone: 0.01),
                             results: results(method: "ft", val: 0.7, test: 0.75, ood: ["blur": 0.25, "rotate": 0.125]))
        let html = try render([a, b])
        for id in ["loss", "accuracy", "lr", "epochs", "shifts", "distortion", "distortion-epochs", "parameters"] {
            XCTAssertEqual(charts(html, id), 2, "chart \(id) once per run")
        }
        XCTAssertEqual(charts(html, "id-vs-ood"), 1)
        // the method table: one row per run with its numbers in %
        XCTAssertTrue(html.contains("<tr><td>daft-run</td><td>daft</td><td>60.00</td><td>62.50</td><td>25.00</td><td>31.25</td><td>18.75</td>"), html)
        XCTAssertTrue(html.contains("<tr><td>ft-run</td><td>ft</td><td>70.00</td><td>75.00</td><td>18.75</td><td>25.00</td><td>12.50</td>"))
        // the scatter: one labelled point per run
        let scatter = try XCTUnwrap(html.components(separatedBy: "data-chart=\"id-vs-ood\"").last?.components(separatedBy: "</svg>").first)
        XCTAssertEqual(scatter.components(separatedBy: "<circle").count - 1, 2)
        XCTAssertTrue(scatter.contains(">daft-run</text>") && scatter.contains(">ft-run</text>"))
        // the histogram: one bar per occupied bin
        let histogram = try XCTUnwrap(html.components(separatedBy: "data-chart=\"distortion\"").dropFirst().first?.components(separatedBy: "</svg>").first)
        XCTAssertEqual(histogram.components(separatedBy: "<rect").count - 1 - 2, 3, "3 bins (+ background and axes frame)")
        XCTAssertTrue(histogram.contains("9 samples"))
        // self-contained: no script, no link, no URL but the SVG namespace
        XCTAssertFalse(html.contains("<script"))
        XCTAssertFalse(html.contains("href=") || html.contains("src="))
        XCTAssertEqual(html.components(separatedBy: "http").count - 1, html.components(separatedBy: "http://www.w3.org/2000/svg").count - 1 + 1,
                       "only the SVG namespace and the CSP meta tag's http-equiv")
        XCTAssertEqual(try render([a, b]), html, "the page is a function of the runs")
    }

    func testMissingPiecesRenderWhatExistsWithANote() throws {
        // LP: a probe, no step or epoch, no OOD set, a results.json of an older daft (no histogram)
        var lpResults = results(method: "lp", val: 0.5, test: 0.5, ood: [:])
        lpResults["ood"] = [String: Any]()
        lpResults["distortion"] = ["l2Mean": 0.0, "l2Std": 0.0, "cosineMean": 1.0, "cosineStd": 0.0, "count": 16]
        let lp = try writeRun("lp", metrics: [["kind": "probe", "step": 0, "val_accuracy": 0.5, "regularisation": 0.1, "solver": "logistic"],
                                              ["kind": "final", "step": 0, "val_accuracy": 0.5]], results: lpResults)
        // in progress: records so far, the last line cut mid-write, no results.json
        let running = try writeRun("running", metrics: Array(fineTuneMetrics(lrHead: 0.3, lrBackbone: 0.01).prefix(5)), results: nil,
                                   tail: "{\"kind\":\"step\",\"lo")
        // a run of a daft before metrics.jsonl
        let old = try writeRun("old", metrics: nil, results: results(method: "ft", val: 0.7, test: 0.7, ood: ["blur": 0.5]))
        let html = try render([lp, running, old])
        XCTAssertTrue(html.contains("no training steps: lp has no fine-tuning phase"), html)
        XCTAssertTrue(html.contains("no OOD sets evaluated (run without --ood)"))
        XCTAssertTrue(html.contains("no per-sample distortion histogram (written by an older daft)"))
        XCTAssertTrue(html.contains("in progress (or stopped): no results.json yet — showing metrics.jsonl up to epoch 0, step 4"))
        XCTAssertTrue(html.contains("the last line is incomplete"))
        XCTAssertTrue(html.contains("no metrics.jsonl: no curves"))
        XCTAssertTrue(html.contains("<tr><td>running*</td><td>?</td><td>40.00</td><td>–</td><td>25.00</td>"), "last epoch's numbers, marked")
        XCTAssertTrue(html.contains("From the epoch 0 record (no final evaluation yet)."))
        XCTAssertEqual(charts(html, "loss"), 1, "only the running run has steps")
        XCTAssertEqual(charts(html, "shifts"), 3, "ID bars even without OOD sets")
        XCTAssertEqual(charts(html, "distortion"), 1, "the old run has a histogram, LP's results.json none, the running run no results")
        XCTAssertEqual(charts(html, "parameters"), 2)
        XCTAssertTrue(html.contains("Not plotted (no ID or no OOD accuracy): lp."))
    }

    func testBadInputIsAOneLineErrorNamingIt() throws {
        func error(_ dir: String) -> String {
            do { _ = try ReportRun.load(dir); return "" } catch { return "\(error)" }
        }
        let empty = root.appendingPathComponent("empty").path
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        XCTAssertEqual(error(empty), "\(empty): neither metrics.jsonl nor results.json (not a daft run's --out directory)")
        XCTAssertEqual(error(root.appendingPathComponent("nope").path), "\(root.appendingPathComponent("nope").path): no such directory")
        let file = root.appendingPathComponent("file.txt")
        try Data("x".utf8).write(to: file)
        XCTAssertTrue(error(file.path).hasPrefix("\(file.path): not a directory"))
        let damaged = try writeRun("damaged", metrics: [["kind": "step", "step": 1]], results: nil, tail: "not json\n{\"kind\":\"epoch\",\"step\":2}\n")
        XCTAssertEqual(error(damaged), "\(damaged)/metrics.jsonl line 2: not a JSON object")
        let kindless = try writeRun("kindless", metrics: [["step": 1]], results: nil)
        XCTAssertEqual(error(kindless), "\(kindless)/metrics.jsonl line 1: record has no \"kind\"")
        let badResults = try writeRun("bad-results", metrics: nil, results: nil)
        try Data("[1, 2".utf8).write(to: URL(fileURLWithPath: badResults + "/results.json"))
        XCTAssertEqual(error(badResults), "\(badResults)/results.json: not a JSON object (a damaged results.json?)")
        var mismatched = results(method: "ft", val: 0.5, test: 0.5, ood: [:])
        mismatched["distortion"] = ["l2Mean": 1.0, "l2Histogram": ["lowerEdges": [0, 1], "counts": [3]]]
        let histogram = try writeRun("bad-histogram", metrics: nil, results: mismatched)
        XCTAssertEqual(error(histogram), "\(histogram)/results.json: distortion.l2Histogram needs as many numeric lowerEdges as counts")
    }

    func testRunNamesAreEscapedAndLabelsUnique() throws {
        let odd = try writeRun("a<b>&\"c\"", metrics: fineTuneMetrics(lrHead: 0.3, lrBackbone: 0.01), results: nil)
        let html = try render([odd])
        XCTAssertFalse(html.contains("a<b>"))
        XCTAssertTrue(html.contains("a&lt;b&gt;&amp;&quot;c&quot;"))
        XCTAssertEqual(ReportRun.uniqueLabels(["/x/one/run", "/x/two/run", "/x/solo"]), ["one/run", "two/run", "solo"])
        XCTAssertEqual(ReportRun.uniqueLabels(["/x/run", "/x/run/"]), ["/x/run", "/x/run (2)"], "the same directory twice")
    }

    func testParameterGroupsFollowTheNetwork() {
        let groups = ReportPage.parameterGroups(["layer10.0.conv1.weight": 1, "fc.weight": 0.9, "fc.bias": 0.7, "conv1.weight": 0.1,
                                                 "bn1.weight": 0.2, "bn1.bias": 0.4, "bn1.running_mean": 0.5, "layer2.0.downsample.0.weight": 0.4,
                                                 "layer2.0.downsample.1.running_var": 0.6, "layer2.0.downsample.1.weight": 0.3, "layer2.0.bn1.bias": 0.1])
        XCTAssertEqual(groups, [
            .init(block: "stem", weights: 0.1, bnAffine: 0.30000000000000004, bnStatistics: 0.5),
            .init(block: "layer2.0", weights: 0.4, bnAffine: 0.2, bnStatistics: 0.6),
            .init(block: "layer10.0", weights: 1, bnAffine: nil, bnStatistics: nil),
            .init(block: "head", weights: 0.8, bnAffine: nil, bnStatistics: nil),
        ])
    }

    func testLongRunsAreThinnedKeepingTheLastStep() {
        let steps = (1...1801).map { ReportRun.Step(step: $0, epoch: 0, loss: 1, accuracy: 0.5, lrHead: 0.1, lrBackbone: 0.01, imagesPerSecond: nil) }
        let thinned = ReportPage.thinned(steps)
        XCTAssertLessThanOrEqual(thinned.count, 601)
        XCTAssertEqual(thinned.first?.step, 1)
        XCTAssertEqual(thinned.last?.step, 1801)
        XCTAssertEqual(ReportPage.thinned(Array(steps.prefix(600))).count, 600, "600 steps are kept as they are")
    }

    func testAxisTicksAreRoundNumbers() {
        let linear = ChartAxis(lo: 0.13, hi: 0.87, pixelLo: 0, pixelHi: 100)
        XCTAssertEqual(linear.ticks.count, 6)
        for (t, e) in zip(linear.ticks, [0, 0.2, 0.4, 0.6, 0.8, 1.0]) { XCTAssertEqual(t, e, accuracy: 1e-12) }
        XCTAssertEqual(linear.position(0.5), 50, accuracy: 1e-9)
        let flat = ChartAxis(lo: 3, hi: 3, pixelLo: 0, pixelHi: 100)
        XCTAssertLessThan(flat.lo, 3); XCTAssertGreaterThan(flat.hi, 3)
        let log = ChartAxis(lo: 0.0025, hi: 0.3, pixelLo: 0, pixelHi: 100, log: true)
        XCTAssertEqual(log.ticks, [0.01, 0.1])
        XCTAssertLessThan(log.lo, 0.0025); XCTAssertGreaterThan(log.hi, 0.3)
        XCTAssertEqual(log.position(log.lo), 0, accuracy: 1e-9); XCTAssertEqual(log.position(log.hi), 100, accuracy: 1e-9)
        XCTAssertEqual(log.position(0.01) - log.position(0.001), log.position(0.1) - log.position(0.01), accuracy: 1e-9, "equal decades")
        let constant = ChartAxis(lo: 0.3, hi: 0.3, pixelLo: 0, pixelHi: 100, log: true)
        XCTAssertEqual(constant.ticks, [0.2, 0.5], "a constant learning rate still gets ticks around it")
        XCTAssertEqual(Charts.format(0.30000000000000004), "0.3")
        XCTAssertEqual(Charts.format(1234.4), "1234")
        XCTAssertEqual(Charts.format(0.0001), "0.0001")
        XCTAssertEqual(Charts.format(1.234e-5), "1.23e-05")
        XCTAssertEqual(Charts.format(2.5e6), "2.5e+06")
    }
}
