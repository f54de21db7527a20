import Foundation

/// The report page: one self-contained HTML file (inline CSS and SVG, no script, a Content-Security-Policy that
/// forbids loading anything) with, for several runs, a method table and an ID vs mean-OOD scatter, then per run
/// its curves, learning rates, ID vs OOD bars, feature distortion and per-layer parameter change.
public enum ReportPage {
    public static func render(runs: [ReportRun], title: String = "daft report") -> String {
        var html = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
        <title>\(esc(title))</title>
        <style>\(css)</style>
        </head><body>
        <h1>\(esc(title))</h1>
        <p class="meta">\(runs.count) run(s): \(runs.map { esc($0.label) }.joined(separator: ", ")). Accuracies in %.</p>

        """
        if runs.count > 1 { html += comparison(runs) }
        for (i, run) in runs.enumerated() { html += section(run, index: i) }
        return html + "</body></html>\n"
    }

    static let css = """
    body{font-family:"DejaVu Sans",Verdana,sans-serif;margin:16px auto;max-width:1160px;color:#222;background:#f4f5f7}
    h1{font-size:22px;margin:4px 0}h2{font-size:18px;margin:22px 0 4px;border-top:2px solid #ccd;padding-top:10px}
    h2 small{font-weight:normal;color:#556}.meta{color:#556;font-size:13px;margin:4px 0}
    ul.notes{font-size:13px;color:#7a4b00;margin:6px 0;padding-left:20px}
    .charts{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;background:#fff;border:1px solid #dde}
    figcaption{font-size:12px;color:#445;padding:2px 8px 6px;max-width:544px}
    svg text{font-family:"DejaVu Sans",Verdana,sans-serif;fill:#222}svg .title{font-size:14px;font-weight:bold}
    svg .tick{font-size:11px}svg .axis{font-size:12px;fill:#445}svg .label{font-size:12px}svg .note{font-size:13px;fill:#7a4b00}
    svg .grid{stroke:#e3e5ea;stroke-width:1}svg .axes{fill:none;stroke:#99a;stroke-width:1}
    table{border-collapse:collapse;background:#fff;font-size:13px;margin:8px 0}
    th,td{border:1px solid #dde;padding:3px 7px;text-align:right}th{background:#eef0f4}td:first-child,td:nth-child(2){text-align:left}
    details{font-size:13px;margin:8px 0}
    """

    static func esc(_ s: String) -> String { Charts.escapeXML(s) }

    static func percent(_ v: Double?) -> String { v.map { $0.isFinite ? String(format: "%.2f", 100 * $0) : "\($0)" } ?? "–" }

    static func figure(_ svg: String, caption: String? = nil) -> String {
        "<figure>\(svg)\(caption.map { "<figcaption>\(esc($0))</figcaption>" } ?? "")</figure>\n"
    }

    // MARK: the numbers of a run

    /// The run's ID/OOD/distortion numbers: the final evaluation (results.json), else the last epoch record.
    struct Summary {
        var valAccuracy: Double?, testAccuracy: Double?
        var ood: [String: Double]
        var meanOOD: Double?
        var l2: Double?, l2Std: Double?, cosine: Double?
        /// nil: from results.json; else which epoch record they come from.
        var fromEpoch: Int?
    }

    static func summary(_ run: ReportRun) -> Summary {
        if let r = run.results {
            return Summary(valAccuracy: r.valAccuracy, testAccuracy: r.testAccuracy, ood: r.ood, meanOOD: r.meanOOD,
                           l2: r.distortion?.l2Mean, l2Std: r.distortion?.l2Std, cosine: r.distortion?.cosineMean, fromEpoch: nil)
        }
        if let e = run.epochs.last {
            return Summary(valAccuracy: e.valAccuracy, testAccuracy: nil, ood: e.ood, meanOOD: e.meanOOD,
                           l2: e.distortionL2, l2Std: nil, cosine: e.distortionCosine, fromEpoch: e.epoch)
        }
        return Summary(valAccuracy: run.probeValAccuracy, testAccuracy: nil, ood: [:], meanOOD: nil, l2: nil, l2Std: nil, cosine: nil,
                       fromEpoch: nil)
    }

    // MARK: several runs

    static func comparison(_ runs: [ReportRun]) -> String {
        let summaries = runs.map(summary)
        let oodNames = Set(summaries.flatMap(\.ood.keys)).sorted()
        var html = "<h2 id=\"comparison\">Comparison</h2>\n<table><tr><th>run</th><th>method</th><th>ID val</th><th>ID test</th><th>mean OOD</th>"
        html += oodNames.map { "<th>\(esc($0))</th>" }.joined() + "<th>feature L2</th><th>cosine</th><th>steps</th><th>wall s</th></tr>\n"
        var partial = false
        for (run, s) in zip(runs, summaries) {
            let mark = s.fromEpoch != nil ? "*" : ""
            partial = partial || s.fromEpoch != nil
            html += "<tr><td>\(esc(run.label))\(mark)</td><td>\(esc(run.method ?? "?"))</td><td>\(percent(s.valAccuracy))</td>"
            html += "<td>\(percent(s.testAccuracy))</td><td>\(percent(s.meanOOD))</td>"
            html += oodNames.map { "<td>\(percent(s.ood[$0]))</td>" }.joined()
            let l2 = s.l2.map { Charts.format($0) + (s.l2Std.map { " ± " + Charts.format($0) } ?? "") } ?? "–"
            html += "<td>\(esc(l2))</td><td>\(s.cosine.map { String(format: "%.4f", $0) } ?? "–")</td>"
            html += "<td>\(run.results?.steps ?? run.steps.last?.step ?? 0)</td><td>\(run.results?.seconds.map { String(format: "%.0f", $0) } ?? "–")</td></tr>\n"
        }
        html += "</table>\n"
        if partial { html += "<p class=\"meta\">* still running (no results.json): numbers of its last epoch record.</p>\n" }
        // ID vs mean OOD: one labelled point per run, coloured by method
        let methods = runs.map { $0.method ?? "?" }.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        func colour(_ m: String) -> String { Charts.palette[methods.firstIndex(of: m)! % Charts.palette.count] }
        var points: [Charts.Point] = [], left: [String] = []
        for (run, s) in zip(runs, summaries) {
            if let id = s.testAccuracy ?? s.valAccuracy, let ood = s.meanOOD {
                points.append(.init(label: run.label, colour: colour(run.method ?? "?"), x: 100 * id, y: 100 * ood))
            } else { left.append(run.label) }
        }
        let scatter = Charts.scatter(id: "id-vs-ood", title: "ID vs mean-OOD accuracy", xLabel: "ID accuracy % (test; val where no test)",
                                     yLabel: "mean OOD accuracy %", points: points, legend: methods.map { ($0, colour($0)) })
        html += "<div class=\"charts\">" + figure(scatter, caption: left.isEmpty ? nil : "Not plotted (no ID or no OOD accuracy): \(left.joined(separator: ", ")).") + "</div>\n"
        return html
    }

    // MARK: one run

    static func section(_ run: ReportRun, index: Int) -> String {
        var html = "<h2 id=\"run-\(index + 1)\">\(esc(run.label)) <small>\(esc(run.method ?? "method unknown"))</small></h2>\n"
        var meta = ["<code>\(esc(run.directory))</code>"]
        if let r = run.results {
            if let w = r.worldSize { meta.append("\(w) rank(s)") }
            if let s = r.steps { meta.append("\(s) steps") }
            if let e = r.bestEpoch { meta.append(e >= 0 ? "best epoch \(e)" : "selected: the probe") }
            if let t = r.seconds { meta.append(String(format: "%.1f s", t)) }
        }
        if !run.phases.isEmpty { meta.append("phases: " + run.phases.map(esc).joined(separator: ", ")) }
        if let p = run.probeValAccuracy { meta.append("probe ID val \(percent(p))") }
        html += "<p class=\"meta\">\(meta.joined(separator: " · "))</p>\n"
        var notes = run.notes
        var charts = ""

        // training curves over steps
        if run.steps.isEmpty {
            if run.hasMetrics {
                notes.append(run.epochs.isEmpty && run.results != nil
                             ? "no training steps: \(run.method ?? "this method") has no fine-tuning phase (probe only), so no loss, accuracy or learning-rate curves"
                             : "no step records yet")
            }
        } else {
            let steps = thinned(run.steps)
            charts += figure(Charts.lineChart(id: "loss", title: "Training loss", xLabel: "step", yLabel: "cross-entropy", series: [
                .init(name: "batch", colour: Charts.palette[0], points: steps.compactMap { s in s.loss.map { (Double(s.step), $0) } }),
                .init(name: "epoch mean", colour: Charts.palette[1],
                      points: run.epochs.compactMap { e in e.trainLoss.map { (Double(e.step), $0) } }, markers: true),
            ]))
            charts += figure(Charts.lineChart(id: "accuracy", title: "Training accuracy", xLabel: "step", yLabel: "accuracy %", series: [
                .init(name: "batch", colour: Charts.palette[0], points: steps.compactMap { s in s.accuracy.map { (Double(s.step), 100 * $0) } }),
                .init(name: "epoch mean", colour: Charts.palette[1],
                      points: run.epochs.compactMap { e in e.trainAccuracy.map { (Double(e.step), 100 * $0) } }, markers: true),
            ]))
        }
        // learning rates: from the step records, else from the epoch records
        let lrPoints: [(x: Double, head: Double?, backbone: Double?)] = run.steps.isEmpty
            ? run.epochs.map { (Double($0.step), $0.lrHead, $0.lrBackbone) } : thinned(run.steps).map { (Double($0.step), $0.lrHead, $0.lrBackbone) }
        if !lrPoints.isEmpty {
            charts += figure(Charts.lineChart(id: "lr", title: "Learning-rate schedule", xLabel: "step", yLabel: "learning rate (log)", series: [
                .init(name: "head", colour: Charts.palette[4], points: lrPoints.compactMap { p in p.head.map { (p.x, $0) } }),
                .init(name: "backbone", colour: Charts.palette[5], points: lrPoints.compactMap { p in p.backbone.map { (p.x, $0) } }),
            ], logY: true))
        }
        // per epoch: ID val, train accuracy, mean OOD
        if !run.epochs.isEmpty {
            charts += figure(Charts.lineChart(id: "epochs", title: "ID val per epoch", xLabel: "epoch", yLabel: "accuracy %", series: [
                .init(name: "ID val", colour: Charts.palette[2], points: run.epochs.compactMap { e in e.valAccuracy.map { (Double(e.epoch), 100 * $0) } }, markers: true),
                .init(name: "train", colour: Charts.palette[0], points: run.epochs.compactMap { e in e.trainAccuracy.map { (Double(e.epoch), 100 * $0) } }, markers: true),
                .init(name: "mean OOD", colour: Charts.palette[3], points: run.epochs.compactMap { e in e.meanOOD.map { (Double(e.epoch), 100 * $0) } }, markers: true),
            ]), caption: run.epochs.allSatisfy { $0.valAccuracy == nil } ? "No ID validation set (run without --val-data)." : nil)
        }

        // ID vs OOD accuracy per shift
        let s = summary(run)
        var rows: [Charts.BarRow] = []
        if let v = s.valAccuracy { rows.append(.init(label: "ID val", bars: [(100 * v, Charts.palette[0])])) }
        if let t = s.testAccuracy { rows.append(.init(label: "ID test", bars: [(100 * t, Charts.palette[0])])) }
        for name in s.ood.keys.sorted() { rows.append(.init(label: name, bars: [(100 * s.ood[name]!, Charts.palette[1])])) }
        if let m = s.meanOOD { rows.append(.init(label: "mean OOD", bars: [(100 * m, Charts.palette[3])])) }
        if s.ood.isEmpty { notes.append("no OOD sets evaluated (run without --ood)") }
        if !rows.isEmpty {
            let source = s.fromEpoch.map { "From the epoch \($0) record (no final evaluation yet)." }
                ?? "Final evaluation of the model selected on ID val."
            charts += figure(Charts.barChart(id: "shifts", title: "ID vs OOD accuracy per shift", valueLabel: "accuracy %", rows: rows,
                                             legend: [("ID", Charts.palette[0]), ("OOD", Charts.palette[1]), ("mean OOD", Charts.palette[3])],
                                             maxValue: 100, valueText: { String(format: "%.1f", $0) }), caption: source)
        }

        // feature distortion
        if let d = run.results?.distortion {
            var caption = "Penultimate features of the selected model vs the model at the start of fine-tuning, per ID sample: L2 \(Charts.format(d.l2Mean))"
            if let sd = d.l2Std { caption += " ± \(Charts.format(sd))" }
            if let c = d.cosineMean { caption += ", cosine \(String(format: "%.4f", c))" + (d.cosineStd.map { " ± \(String(format: "%.4f", $0))" } ?? "") }
            if let n = d.count { caption += " over \(n) samples" }
            if let h = d.histogram {
                charts += figure(Charts.histogram(id: "distortion", title: "Feature distortion: per-sample L2", xLabel: "L2 distance (log)",
                                                  lowerEdges: h.lowerEdges, counts: h.counts, colour: Charts.palette[9]), caption: caption + ".")
            } else {
                notes.append("results.json has no per-sample distortion histogram (written by an older daft): " + caption)
            }
        } else if run.results != nil {
            notes.append("no feature distortion (run without --test-data or --val-data)")
        }
        let epochL2 = run.epochs.compactMap { e in e.distortionL2.map { (Double(e.epoch), $0) } }
        if !epochL2.isEmpty {
            charts += figure(Charts.lineChart(id: "distortion-epochs", title: "Feature distortion per epoch", xLabel: "epoch", yLabel: "mean L2", series: [
                .init(name: "mean L2", colour: Charts.palette[9], points: epochL2, markers: true),
            ]))
        }

        // per-layer parameter change
        var details = ""
        if let distances = run.results?.parameterDistance, !distances.isEmpty {
            let groups = parameterGroups(distances)
            let kinds = [("conv / fc weights", Charts.palette[0]), ("BN γ, β", Charts.palette[1]), ("BN running statistics", Charts.palette[2])]
            let rows = groups.map { g in
                Charts.BarRow(label: g.block, bars: [(g.weights, kinds[0].1), (g.bnAffine, kinds[1].1), (g.bnStatistics, kinds[2].1)])
            }
            // the head (new or probed) often moves 100× more than the backbone: then a log axis keeps the blocks readable
            let positive = distances.values.filter { $0 > 0 && $0.isFinite }
            let log = (positive.max() ?? 0) > 30 * (positive.min() ?? 1)
            charts += figure(Charts.barChart(id: "parameters", title: "Parameter change per block",
                                             valueLabel: "mean ‖θ − θ0‖ / ‖θ0‖ of the block's tensors" + (log ? " (log)" : ""),
                                             rows: rows, legend: kinds, logScale: log),
                             caption: "Relative change against the model at the start of fine-tuning.")
            details = "<details><summary>parameter change of every tensor</summary><table><tr><th>tensor</th><th>‖θ − θ0‖ / ‖θ0‖</th></tr>"
            for name in distances.keys.sorted(by: { modelOrder($0).lexicographicallyPrecedes(modelOrder($1)) }) {
                details += "<tr><td>\(esc(name))</td><td>\(esc(Charts.format(distances[name]!)))</td></tr>"
            }
            details += "</table></details>\n"
        }

        if !notes.isEmpty { html += "<ul class=\"notes\">" + notes.map { "<li>\(esc($0))</li>" }.joined() + "</ul>\n" }
        html += "<div class=\"charts\">\n\(charts)</div>\n\(details)"
        return html
    }

    /// At most 600 step records (every k-th, always the last) so long runs keep the page small.
    static func thinned(_ steps: [ReportRun.Step]) -> [ReportRun.Step] {
        guard steps.count > 600 else { return steps }
        let k = (steps.count + 599) / 600
        var out = stride(from: 0, to: steps.count, by: k).map { steps[$0] }
        if (steps.count - 1) % k != 0 { out.append(steps[steps.count - 1]) }
        return out
    }

    // MARK: parameter groups

    /// One block's mean relative change per kind of tensor (nil: the block has none of that kind).
    struct ParameterGroup: Equatable {
        var block: String
        var weights: Double?, bnAffine: Double?, bnStatistics: Double?
    }

    /// The torchvision tensor names grouped by block in model order: `stem` (conv1, bn1), `layerS.B` (its convs,
    /// BNs and downsample), `head` (fc), anything else by its first name component.
    static func parameterGroups(_ distances: [String: Double]) -> [ParameterGroup] {
        var sums: [String: [Int: (sum: Double, count: Int)]] = [:]
        for (name, d) in distances where d.isFinite {
            let parts = name.split(separator: ".").map(String.init)
            let last = parts.last ?? "", module = parts.dropLast().last ?? ""
            let kind = ["running_mean", "running_var"].contains(last) ? 2
                : (module.hasPrefix("bn") || (module == "1" && parts.contains("downsample"))) ? 1 : 0
            let block = blockName(parts)
            var entry = sums[block, default: [:]][kind, default: (0, 0)]
            entry.sum += d; entry.count += 1
            sums[block, default: [:]][kind] = entry
        }
        return sums.keys.sorted { modelOrder($0).lexicographicallyPrecedes(modelOrder($1)) }.map { block in
            func mean(_ k: Int) -> Double? { sums[block]![k].map { $0.sum / Double($0.count) } }
            return ParameterGroup(block: block, weights: mean(0), bnAffine: mean(1), bnStatistics: mean(2))
        }
    }

    static func blockName(_ parts: [String]) -> String {
        guard let first = parts.first else { return "?" }
        if first.hasPrefix("layer"), parts.count >= 3 { return "\(first).\(parts[1])" }
        if first == "conv1" || first == "bn1" { return "stem" }
        if first == "fc" { return "head" }
        return first
    }

    /// Sort key of a tensor or block name in network order: stem, layer1.0 … layerS.B (numerically), head, others.
    static func modelOrder(_ name: String) -> [String] {
        let parts = name.split(separator: ".").map(String.init)
        func padded(_ s: String) -> String { Int(s).map { String(format: "%06d", $0) } ?? s }
        switch blockName(parts) {
        case "stem": return ["0"] + parts
        case "head": return ["2"] + parts
        case let b where b.hasPrefix("layer"): return ["1"] + parts.map { padded($0.hasPrefix("layer") ? String($0.dropFirst(5)) : $0) }
        default: return ["3"] + parts
        }
    }
}
