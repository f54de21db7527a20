import Foundation

/// A one-line error of `daft report` naming the directory or file and what is wrong.
public struct ReportError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

/// One run directory as the report reads it: the records of `metrics.jsonl` (as far as they go) and the final
/// numbers of `results.json` (absent while the run is still going). Numbers are read leniently — a missing or
/// non-numeric field is simply absent — so runs of older versions and unfinished runs render what they have.
public struct ReportRun {
    /// One `step` record: the training batch's loss and accuracy and the learning rates at that step.
    public struct Step {
        public var step: Int, epoch: Int
        public var loss: Double?, accuracy: Double?, lrHead: Double?, lrBackbone: Double?, imagesPerSecond: Double?
    }

    /// One `epoch` record (end of an epoch).
    public struct Epoch {
        public var epoch: Int, step: Int
        public var trainLoss: Double?, trainAccuracy: Double?, valAccuracy: Double?
        public var ood: [String: Double], meanOOD: Double?
        public var distortionL2: Double?, distortionCosine: Double?
        public var lrHead: Double?, lrBackbone: Double?
    }

    /// Feature distortion of the selected model (results.json), with the per-sample L2 histogram when recorded.
    public struct Distortion {
        public var l2Mean: Double, l2Std: Double?, cosineMean: Double?, cosineStd: Double?, count: Int?
        /// Bin i counts lowerEdges[i] ≤ L2 < lowerEdges[i + 1]; the last bin is unbounded.
        public var histogram: (lowerEdges: [Double], counts: [Int])?
    }

    /// The final evaluation of results.json.
    public struct Results {
        public var method: String?, worldSize: Int?, steps: Int?, bestEpoch: Int?, seconds: Double?
        public var valAccuracy: Double?, testAccuracy: Double?
        public var ood: [String: Double], meanOOD: Double?
        public var distortion: Distortion?
        /// ‖θ − θ0‖ / ‖θ0‖ per tensor.
        public var parameterDistance: [String: Double]
    }

    public var directory: String
    /// A short, unique name in the page (the directory's last path component, longer when two would clash).
    public var label: String
    /// false when the directory has no metrics.jsonl.
    public var hasMetrics: Bool
    public var steps: [Step] = []
    public var epochs: [Epoch] = []
    /// `phase` records (`convert-bn`) in order.
    public var phases: [String] = []
    /// The `probe` record's ID validation accuracy.
    public var probeValAccuracy: Double?
    public var results: Results?
    /// Things a reader should know about what is missing (rendered under the run's heading).
    public var notes: [String] = []

    public var method: String? { results?.method }

    /// Reads `directory`: at least one of metrics.jsonl and results.json must exist. Throws a one-line
    /// `ReportError` naming the directory or the file and line for anything unreadable.
    public static func load(_ directory: String) throws -> ReportRun {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: directory, isDirectory: &isDirectory) else { throw ReportError("\(directory): no such directory") }
        guard isDirectory.boolValue else { throw ReportError("\(directory): not a directory (give a run's --out directory)") }
        let dir = URL(fileURLWithPath: directory)
        let metricsPath = dir.appendingPathComponent("metrics.jsonl").path, resultsPath = dir.appendingPathComponent("results.json").path
        let hasMetrics = fm.fileExists(atPath: metricsPath), hasResults = fm.fileExists(atPath: resultsPath)
        guard hasMetrics || hasResults else {
            throw ReportError("\(directory): neither metrics.jsonl nor results.json (not a daft run's --out directory)")
        }
        var run = ReportRun(directory: directory, label: dir.standardizedFileURL.lastPathComponent, hasMetrics: hasMetrics)
        if hasMetrics { try run.readMetrics(metricsPath) } else {
            run.notes.append("no metrics.jsonl: no curves (the run predates the run records); final numbers from results.json")
        }
        if hasResults { run.results = try readResults(resultsPath) } else {
            let last = run.epochs.last.map { "epoch \($0.epoch), step \($0.step)" } ?? run.steps.last.map { "step \($0.step)" } ?? "no step yet"
            run.notes.append("in progress (or stopped): no results.json yet — showing metrics.jsonl up to \(last); no final evaluation, parameter change or distortion histogram")
        }
        return run
    }

    mutating func readMetrics(_ path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw ReportError("\(path): cannot read") }
        let text = String(decoding: data, as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (i, line) in lines.enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            guard let record = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
                // a run being written can leave its last line unfinished; anywhere else the file is damaged
                if i == lines.count - 1 {
                    notes.append("metrics.jsonl: the last line is incomplete (the run is still writing); it is left out")
                    continue
                }
                throw ReportError("\(path) line \(i + 1): not a JSON object")
            }
            guard let kind = record["kind"] as? String else { throw ReportError("\(path) line \(i + 1): record has no \"kind\"") }
            let step = Self.integer(record["step"]) ?? 0
            let lr = record["lr"] as? [String: Any]
            switch kind {
            case "step":
                steps.append(Step(step: step, epoch: Self.integer(record["epoch"]) ?? 0, loss: Self.number(record["loss"]),
                                  accuracy: Self.number(record["accuracy"]), lrHead: Self.number(lr?["head"]),
                                  lrBackbone: Self.number(lr?["backbone"]), imagesPerSecond: Self.number(record["images_per_s"])))
            case "epoch":
                let distortion = record["distortion"] as? [String: Any]
                epochs.append(Epoch(epoch: Self.integer(record["epoch"]) ?? epochs.count, step: step,
                                    trainLoss: Self.number(record["train_loss"]), trainAccuracy: Self.number(record["train_accuracy"]),
                                    valAccuracy: Self.number(record["val_accuracy"]), ood: Self.numbers(record["ood"]),
                                    meanOOD: Self.number(record["mean_ood"]), distortionL2: Self.number(distortion?["l2"]),
                                    distortionCosine: Self.number(distortion?["cosine"]), lrHead: Self.number(lr?["head"]),
                                    lrBackbone: Self.number(lr?["backbone"])))
            case "phase":
                phases.append(record["phase"] as? String ?? "?")
            case "probe":
                probeValAccuracy = Self.number(record["val_accuracy"])
            default:
                break  // `final` repeats results.json; kinds of later versions are skipped
            }
        }
    }

    static func readResults(_ path: String) throws -> Results {
        guard let data = FileManager.default.contents(atPath: path) else { throw ReportError("\(path): cannot read") }
        guard let r = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ReportError("\(path): not a JSON object (a damaged results.json?)")
        }
        var distortion: Distortion? = nil
        if let d = r["distortion"] as? [String: Any], let l2 = number(d["l2Mean"]) {
            var histogram: (lowerEdges: [Double], counts: [Int])? = nil
            if let h = d["l2Histogram"] as? [String: Any], let edges = h["lowerEdges"] as? [Any], let counts = h["counts"] as? [Any] {
                let e = edges.compactMap { number($0) }, c = counts.compactMap { integer($0) }
                guard !e.isEmpty, e.count == edges.count, c.count == counts.count, e.count == c.count else {
                    throw ReportError("\(path): distortion.l2Histogram needs as many numeric lowerEdges as counts")
                }
                histogram = (e, c)
            }
            distortion = Distortion(l2Mean: l2, l2Std: number(d["l2Std"]), cosineMean: number(d["cosineMean"]),
                                    cosineStd: number(d["cosineStd"]), count: integer(d["count"]), histogram: histogram)
        }
        let ood = (r["ood"] as? [String: Any] ?? [:]).compactMapValues { number(($0 as? [String: Any])?["accuracy"]) }
        return Results(method: r["method"] as? String, worldSize: integer(r["worldSize"]), steps: integer(r["steps"]),
                       bestEpoch: integer(r["bestEpoch"]), seconds: number(r["seconds"]), valAccuracy: number(r["valAccuracy"]),
                       testAccuracy: number((r["test"] as? [String: Any])?["accuracy"]), ood: ood, meanOOD: number(r["meanOOD"]),
                       distortion: distortion, parameterDistance: numbers(r["parameterDistance"]))
    }

    /// A JSON number as Double (JSONSerialization gives Int, Double or NSNumber; results.json writes NaN as "nan").
    static func number(_ value: Any?) -> Double? {
        switch value {
        case let d as Double: return d
        case let i as Int: return Double(i)
        case let n as NSNumber where !(value is Bool): return n.doubleValue
        case let s as String where ["nan", "inf", "-inf"].contains(s): return Double(s)
        default: return nil
        }
    }

    static func integer(_ value: Any?) -> Int? {
        guard let d = number(value), d.isFinite, d == d.rounded(), abs(d) < 1e15 else { return nil }
        return Int(d)
    }

    static func numbers(_ value: Any?) -> [String: Double] {
        (value as? [String: Any] ?? [:]).compactMapValues { number($0) }
    }

    /// Labels for `runs`: each directory's last component, or its last two (then the whole path) where that clashes.
    public static func uniqueLabels(_ directories: [String]) -> [String] {
        let urls = directories.map { URL(fileURLWithPath: $0).standardizedFileURL }
        func label(_ u: URL, _ depth: Int) -> String {
            var parts: [String] = [], v = u
            for _ in 0..<depth where v.path != "/" { parts.insert(v.lastPathComponent, at: 0); v = v.deletingLastPathComponent() }
            return parts.joined(separator: "/")
        }
        var labels = urls.map { label($0, 1) }
        for widen in [{ (i: Int) in label(urls[i], 2) }, { (i: Int) in urls[i].path }] {
            let before = labels
            for i in labels.indices where before.filter({ $0 == before[i] }).count > 1 { labels[i] = widen(i) }
        }
        for i in labels.indices where labels[..<i].contains(labels[i]) { labels[i] += " (\(i + 1))" }  // the same directory twice
        return labels
    }
}
