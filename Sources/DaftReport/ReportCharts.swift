import Foundation

/// The report's inline SVG charts, drawn by hand: a line chart, a horizontal bar chart, a scatter and a
/// histogram, sharing `ChartAxis` (mapping and ticks) and `ChartFrame` (title, legend, grid, tick labels).
/// Every string that comes from a run is escaped with `escapeXML`.
enum Charts {
    static let width = 560.0
    static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

    /// One line (or, with `markers`, dots joined by a line) of a line chart.
    struct Series {
        var name: String
        var colour: String
        var points: [(x: Double, y: Double)]
        var markers = false
    }

    /// Lines over a shared x axis. Non-finite points (and, on a log axis, non-positive ones) are left out.
    static func lineChart(id: String, title: String, xLabel: String, yLabel: String, series: [Series], logY: Bool = false,
                          yRange: (Double, Double)? = nil, height: Double = 300) -> String {
        let series = series.map { s -> Series in
            var s = s
            s.points = s.points.filter { $0.x.isFinite && $0.y.isFinite && (!logY || $0.y > 0) }
            return s
        }.filter { !$0.points.isEmpty }
        let xs = series.flatMap { $0.points.map(\.x) }, ys = series.flatMap { $0.points.map(\.y) }
        guard let xMin = xs.min(), let xMax = xs.max(), let yMin = ys.min(), let yMax = ys.max() else {
            return emptyChart(id: id, title: title, message: "nothing recorded")
        }
        let frame = ChartFrame(height: height, left: 58)
        let x = ChartAxis(lo: xMin, hi: xMax, pixelLo: frame.plotLeft, pixelHi: frame.plotRight)
        let y = ChartAxis(lo: yRange?.0 ?? yMin, hi: yRange?.1 ?? yMax, pixelLo: frame.plotBottom, pixelHi: frame.plotTop, log: logY)
        var svg = frame.open(id: id, title: title, legend: series.map { ($0.name, $0.colour) })
        svg += frame.grid(x: x, y: y, xLabel: xLabel, yLabel: yLabel)
        for s in series {
            let path = s.points.map { "\(pt(x.position($0.x))),\(pt(y.position($0.y)))" }.joined(separator: " ")
            if s.points.count > 1 {
                svg += "<polyline fill=\"none\" stroke=\"\(s.colour)\" stroke-width=\"2\" points=\"\(path)\"/>"
            }
            if s.markers || s.points.count == 1 {
                for p in s.points {
                    svg += "<circle cx=\"\(pt(x.position(p.x)))\" cy=\"\(pt(y.position(p.y)))\" r=\"3.5\" fill=\"\(s.colour)\">"
                        + "<title>\(escapeXML("\(s.name): \(format(p.y)) at \(format(p.x))"))</title></circle>"
                }
            }
        }
        return svg + "</svg>"
    }

    /// One row of a bar chart: a label and its bars (nil leaves the slot empty), each with its own colour.
    struct BarRow {
        var label: String
        var bars: [(value: Double?, colour: String)]
    }

    /// Horizontal bars from 0 (on a log axis, `logScale`, from half the smallest positive value), one group per row;
    /// `valueText` writes each bar's value at its end.
    static func barChart(id: String, title: String, valueLabel: String, rows: [BarRow], legend: [(String, String)],
                         maxValue: Double? = nil, logScale: Bool = false, valueText: ((Double) -> String)? = nil) -> String {
        let values = rows.flatMap { $0.bars.compactMap(\.value) }.filter(\.isFinite)
        guard !rows.isEmpty, let top = values.max() else { return emptyChart(id: id, title: title, message: "nothing recorded") }
        let slots = rows.map(\.bars.count).max() ?? 1
        let barHeight = slots == 1 ? 16.0 : 8.0, rowHeight = Double(slots) * barHeight + 6
        let longest = rows.map(\.label.count).max() ?? 4
        let frame = ChartFrame(height: 0, left: min(14 + 7.2 * Double(longest), 200), right: valueText == nil ? 16 : 48,
                               plotHeight: rowHeight * Double(rows.count))
        let smallest = values.filter { $0 > 0 }.min() ?? 1
        let log = logScale && top > 0
        let x = ChartAxis(lo: log ? smallest / 2 : 0, hi: max(maxValue ?? top, log ? smallest : 1e-12), pixelLo: frame.plotLeft,
                          pixelHi: frame.plotRight, log: log)
        var svg = frame.open(id: id, title: title, legend: legend)
        svg += frame.grid(x: x, y: nil, xLabel: valueLabel, yLabel: "")
        for (r, row) in rows.enumerated() {
            let top = frame.plotTop + Double(r) * rowHeight + 3
            svg += "<text x=\"\(pt(frame.plotLeft - 6))\" y=\"\(pt(top + Double(slots) * barHeight / 2 + 4))\" text-anchor=\"end\" class=\"tick\">"
                + "\(escapeXML(row.label))</text>"
            for (b, bar) in row.bars.enumerated() {
                guard let v = bar.value, v.isFinite else { continue }
                let y0 = top + Double(b) * barHeight, w = max(x.position(max(v, x.lo)) - frame.plotLeft, 0.5)
                svg += "<rect x=\"\(pt(frame.plotLeft))\" y=\"\(pt(y0))\" width=\"\(pt(w))\" height=\"\(pt(barHeight - 1))\" fill=\"\(bar.colour)\">"
                    + "<title>\(escapeXML("\(row.label): \(format(v))"))</title></rect>"
                if let valueText {
                    svg += "<text x=\"\(pt(frame.plotLeft + w + 3))\" y=\"\(pt(y0 + barHeight - 2))\" class=\"tick\">\(escapeXML(valueText(v)))</text>"
                }
            }
        }
        return svg + "</svg>"
    }

    /// One labelled point of a scatter.
    struct Point {
        var label: String, colour: String, x: Double, y: Double
    }

    /// Labelled points; the axes pad the points' range by a tenth on each side.
    static func scatter(id: String, title: String, xLabel: String, yLabel: String, points: [Point], legend: [(String, String)]) -> String {
        let points = points.filter { $0.x.isFinite && $0.y.isFinite }
        guard let xMin = points.map(\.x).min(), let xMax = points.map(\.x).max(),
              let yMin = points.map(\.y).min(), let yMax = points.map(\.y).max() else {
            return emptyChart(id: id, title: title, message: "no run has both numbers")
        }
        let padX = max((xMax - xMin) / 10, 0.01), padY = max((yMax - yMin) / 10, 0.01)
        let frame = ChartFrame(height: 380, left: 58, right: 24)
        let x = ChartAxis(lo: xMin - padX, hi: xMax + padX, pixelLo: frame.plotLeft, pixelHi: frame.plotRight)
        let y = ChartAxis(lo: yMin - padY, hi: yMax + padY, pixelLo: frame.plotBottom, pixelHi: frame.plotTop)
        var svg = frame.open(id: id, title: title, legend: legend)
        svg += frame.grid(x: x, y: y, xLabel: xLabel, yLabel: yLabel)
        for p in points {
            let px = x.position(p.x), py = y.position(p.y)
            // labels on the right half go to the point's left, so they stay inside the chart
            let right = px > (frame.plotLeft + frame.plotRight) / 2
            svg += "<circle cx=\"\(pt(px))\" cy=\"\(pt(py))\" r=\"5.5\" fill=\"\(p.colour)\" stroke=\"#fff\">"
                + "<title>\(escapeXML("\(p.label): \(format(p.x)), \(format(p.y))"))</title></circle>"
            svg += "<text x=\"\(pt(right ? px - 8 : px + 8))\" y=\"\(pt(py - 7))\" text-anchor=\"\(right ? "end" : "start")\" class=\"label\">"
                + "\(escapeXML(p.label))</text>"
        }
        return svg + "</svg>"
    }

    /// Counts in bins with `lowerEdges` (the last bin unbounded) on a log x axis, trimmed to the occupied bins.
    /// Bin 0 (from 0, not representable on a log axis) and the unbounded last bin are drawn one bin wide.
    static func histogram(id: String, title: String, xLabel: String, lowerEdges: [Double], counts: [Int], colour: String) -> String {
        guard let first = counts.firstIndex(where: { $0 > 0 }), let last = counts.lastIndex(where: { $0 > 0 }),
              lowerEdges.count == counts.count, lowerEdges.count >= 3 else {
            return emptyChart(id: id, title: title, message: "no samples")
        }
        // the drawn extent of bin i (log-axis coordinates)
        let ratio = lowerEdges[2] / lowerEdges[1]
        func extent(_ i: Int) -> (Double, Double) {
            let lo = i == 0 ? lowerEdges[1] / ratio : lowerEdges[i]
            let hi = i + 1 < lowerEdges.count ? lowerEdges[i + 1] : lowerEdges[i] * ratio
            return (lo, hi)
        }
        let frame = ChartFrame(height: 300, left: 58)
        let x = ChartAxis(lo: extent(max(first - 1, 0)).0, hi: extent(min(last + 1, counts.count - 1)).1,
                          pixelLo: frame.plotLeft, pixelHi: frame.plotRight, log: true)
        let y = ChartAxis(lo: 0, hi: Double(counts.max()!), pixelLo: frame.plotBottom, pixelHi: frame.plotTop)
        var svg = frame.open(id: id, title: title, legend: [])
        svg += frame.grid(x: x, y: y, xLabel: xLabel, yLabel: "samples")
        for i in first...last where counts[i] > 0 {
            let (lo, hi) = extent(i)
            let x0 = x.position(lo), x1 = x.position(hi), y1 = y.position(Double(counts[i]))
            let range = i == 0 ? "< \(format(lowerEdges[1]))" : i == counts.count - 1 ? "≥ \(format(lowerEdges[i]))" : "\(format(lo)) – \(format(hi))"
            svg += "<rect x=\"\(pt(x0 + 0.5))\" y=\"\(pt(y1))\" width=\"\(pt(max(x1 - x0 - 1, 1)))\" height=\"\(pt(frame.plotBottom - y1))\" fill=\"\(colour)\">"
                + "<title>\(escapeXML("L2 \(range): \(counts[i]) samples"))</title></rect>"
        }
        return svg + "</svg>"
    }

    /// A framed chart that says why it is empty.
    static func emptyChart(id: String, title: String, message: String) -> String {
        let frame = ChartFrame(height: 120, left: 20)
        return frame.open(id: id, title: title, legend: [])
            + "<text x=\"\(pt(width / 2))\" y=\"\(pt(frame.plotTop + 30))\" text-anchor=\"middle\" class=\"note\">\(escapeXML(message))</text></svg>"
    }

    /// A number for labels: up to 4 significant digits, no trailing zeros.
    static func format(_ v: Double) -> String {
        guard v.isFinite else { return "\(v)" }
        if v != 0 && (abs(v) >= 1e5 || abs(v) < 1e-3) { return String(format: "%.3g", v) }
        var s = String(format: "%.4g", v)
        if s.contains("e") { return s }
        if s.contains(".") { while s.hasSuffix("0") { s.removeLast() }; if s.hasSuffix(".") { s.removeLast() } }
        return s
    }

    static func escapeXML(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }
}

/// An SVG coordinate: one decimal.
func pt(_ v: Double) -> String { String(format: "%.1f", v) }

/// A linear or log10 axis: maps values to pixels over a range widened to "nice" tick values.
struct ChartAxis {
    let lo: Double, hi: Double, log: Bool
    let pixelLo: Double, pixelHi: Double
    let ticks: [Double]

    init(lo: Double, hi: Double, pixelLo: Double, pixelHi: Double, log: Bool = false) {
        self.log = log; self.pixelLo = pixelLo; self.pixelHi = pixelHi
        if log {
            // at least a factor 4 around the values; decades, and with at most two of them also 2× and 5× ticks
            var lo = lo, hi = hi
            if hi < lo * 4 { let mid = (lo * hi).squareRoot(); lo = mid / 2; hi = mid * 2 } else { lo /= 1.15; hi *= 1.15 }
            let a = Foundation.log10(lo), b = Foundation.log10(hi)
            let d0 = Int(a.rounded(.down)), d1 = Int(b.rounded(.up))
            var t: [Double] = []
            for d in d0...d1 {
                for m in (d1 - d0 <= 2 ? [1.0, 2, 5] : [1.0]) { t.append(m * pow(10, Double(d))) }
            }
            ticks = t.filter { $0 >= lo * 0.9999 && $0 <= hi * 1.0001 }
            self.lo = lo; self.hi = hi
        } else {
            var a = lo, b = hi
            if b - a < 1e-12 { let pad = max(abs(a) * 0.05, 0.5); a -= pad; b += pad }
            let raw = (b - a) / 5, magnitude = pow(10, (Foundation.log10(raw)).rounded(.down))
            let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
            a = (a / step).rounded(.down) * step; b = (b / step).rounded(.up) * step
            ticks = stride(from: a, through: b + step / 2, by: step).map { abs($0) < step * 1e-9 ? 0 : $0 }
            self.lo = a; self.hi = b
        }
    }

    func position(_ v: Double) -> Double {
        let f = log ? (Foundation.log10(v) - Foundation.log10(lo)) / (Foundation.log10(hi) - Foundation.log10(lo)) : (v - lo) / (hi - lo)
        return pixelLo + f * (pixelHi - pixelLo)
    }
}

/// The frame every chart shares: size, margins, title, legend row, grid lines, tick labels and axis labels.
struct ChartFrame {
    let height: Double, left: Double, right: Double
    let top = 46.0, bottom = 42.0

    /// `height` 0: computed from `plotHeight`.
    init(height: Double, left: Double, right: Double = 16, plotHeight: Double = 0) {
        self.left = left; self.right = right
        self.height = height > 0 ? height : plotHeight + 46 + 42
    }

    var plotLeft: Double { left }
    var plotRight: Double { Charts.width - right }
    var plotTop: Double { top }
    var plotBottom: Double { height - bottom }

    func open(id: String, title: String, legend: [(String, String)]) -> String {
        let size = "width=\"\(pt(Charts.width))\" height=\"\(pt(height))\""
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" data-chart=\"\(Charts.escapeXML(id))\" \(size) role=\"img\">"
        svg += "<title>\(Charts.escapeXML(title))</title><rect \(size) fill=\"#fff\"/>"
        svg += "<text x=\"10\" y=\"18\" class=\"title\">\(Charts.escapeXML(title))</text>"
        var x = left
        for (name, colour) in legend {
            svg += "<rect x=\"\(pt(x))\" y=\"27\" width=\"10\" height=\"10\" fill=\"\(colour)\"/>"
                + "<text x=\"\(pt(x + 14))\" y=\"36\" class=\"tick\">\(Charts.escapeXML(name))</text>"
            x += 28 + 7 * Double(name.count)
        }
        return svg
    }

    /// Grid lines and tick labels of `x` (vertical lines) and `y` (horizontal lines, optional), and the axis labels.
    func grid(x: ChartAxis, y: ChartAxis?, xLabel: String, yLabel: String) -> String {
        var svg = ""
        for t in x.ticks {
            let px = x.position(t)
            svg += "<line x1=\"\(pt(px))\" y1=\"\(pt(plotTop))\" x2=\"\(pt(px))\" y2=\"\(pt(plotBottom))\" class=\"grid\"/>"
                + "<text x=\"\(pt(px))\" y=\"\(pt(plotBottom + 14))\" text-anchor=\"middle\" class=\"tick\">\(Charts.format(t))</text>"
        }
        if let y {
            for t in y.ticks {
                let py = y.position(t)
                svg += "<line x1=\"\(pt(plotLeft))\" y1=\"\(pt(py))\" x2=\"\(pt(plotRight))\" y2=\"\(pt(py))\" class=\"grid\"/>"
                    + "<text x=\"\(pt(plotLeft - 5))\" y=\"\(pt(py + 4))\" text-anchor=\"end\" class=\"tick\">\(Charts.format(t))</text>"
            }
        }
        svg += "<rect x=\"\(pt(plotLeft))\" y=\"\(pt(plotTop))\" width=\"\(pt(plotRight - plotLeft))\" height=\"\(pt(plotBottom - plotTop))\" class=\"axes\"/>"
        svg += "<text x=\"\(pt((plotLeft + plotRight) / 2))\" y=\"\(pt(height - 8))\" text-anchor=\"middle\" class=\"axis\">\(Charts.escapeXML(xLabel))</text>"
        if !yLabel.isEmpty {
            svg += "<text transform=\"translate(14 \(pt((plotTop + plotBottom) / 2))) rotate(-90)\" text-anchor=\"middle\" class=\"axis\">"
                + "\(Charts.escapeXML(yLabel))</text>"
        }
        return svg
    }
}
