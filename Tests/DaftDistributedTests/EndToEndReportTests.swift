import Foundation
import XCTest
import DaftTestSupport

/// `daft report` in a real browser: two tiny runs, their report rendered by headless Chromium (Debian `chromium`),
/// which must load it without a console message (the page has no script; a blocked load — anything external the
/// Content-Security-Policy refuses — would log one) and draw its charts: the DOM holds every chart's SVG, and the
/// screenshot has inked regions of several colours, the charts' own palette colours among them.
extension EndToEndTrainingTests {
    /// `chromium` on PATH, else a loud skip (CI installs it through launch/install-deps.sh).
    func chromiumPath() throws -> String {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            if FileManager.default.isExecutableFile(atPath: "\(dir)/chromium") { return "\(dir)/chromium" }
        }
        let message = "SKIPPED testEndToEndReportRendersInChromium: chromium is not installed (apt-get install chromium; launch/install-deps.sh lists it) — daft report was NOT checked in a browser"
        FileHandle.standardError.write(Data("\n*** \(message) ***\n\n".utf8))
        throw XCTSkip(message)
    }

    /// Headless Chromium on `page` with console logging on stderr; `mode` is `--screenshot=FILE` or `--dump-dom`.
    func chromium(_ path: String, page: String, mode: String, profile: String) throws -> Harness.Result {
        let r = try Harness.run(path, ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--user-data-dir=\(profile)",
                                       "--enable-logging=stderr", "--v=0", "--window-size=1200,2400", mode, "file://\(page)"],
                                environment: [:], timeout: 180)
        XCTAssertFalse(r.timedOut, "chromium \(mode) timed out")
        XCTAssertEqual(r.status, 0, "chromium \(mode) failed:\n\(r.stderr.suffix(2000))")
        return r
    }

    /// Console messages (`…:CONSOLE(…)] "…"`) and uncaught exceptions in Chromium's log.
    func consoleLines(_ log: String) -> [String] {
        log.split(separator: "\n").map(String.init).filter { $0.contains(":CONSOLE") || $0.contains("Uncaught") }
    }

    func testEndToEndReportRendersInChromium() throws {
        let browser = try chromiumPath()
        let data = "npy:\(Self.dataX),\(Self.dataY)"
        let common = ["--init", Self.pretrained, "--data", data, "--val-data", data, "--test-data", data,
                      "--ood", "blur=\(data)@blur", "--ood", "rotate=\(data)@rotate", "--eval-limit", "64",
                      "--batch-size", "16", "--epochs", "2", "--log-every", "1", "--checkpoint-every", "0"]
        try run(["finetune", "--method", "daft"] + common + ["--out", dir("report-daft")])
        try run(["finetune", "--method", "ft", "--lr", "0.01"] + common + ["--out", dir("report-ft")])
        let page = dir("report.html")
        let made = try run(["report", dir("report-daft"), dir("report-ft"), "--out", page])
        XCTAssertTrue(made.stdout.contains("report: 2 run(s) → \(page)"), made.stdout)
        let profile = dir("chromium-profile")

        // the console capture works: a control page that logs is seen to log
        let control = dir("control.html")
        try Data("<!DOCTYPE html><html><body><script>console.error('daft-control-message')</script></body></html>".utf8)
            .write(to: URL(fileURLWithPath: control))
        let seen = try chromium(browser, page: control, mode: "--dump-dom", profile: profile)
        XCTAssertTrue(consoleLines(seen.stderr).contains { $0.contains("daft-control-message") },
                      "chromium's console log is not captured, so the check below could not fail:\n\(seen.stderr.suffix(2000))")

        // the report: no console message, every chart in the DOM
        let dom = try chromium(browser, page: page, mode: "--dump-dom", profile: profile)
        XCTAssertEqual(consoleLines(dom.stderr), [], "console messages while loading the report")
        for (chart, count) in [("id-vs-ood", 1), ("loss", 2), ("accuracy", 2), ("lr", 2), ("epochs", 2), ("shifts", 2),
                               ("distortion", 2), ("distortion-epochs", 2), ("parameters", 2)] {
            XCTAssertEqual(dom.stdout.components(separatedBy: "data-chart=\"\(chart)\"").count - 1, count, "\(chart) charts in the DOM")
        }
        XCTAssertTrue(dom.stdout.contains("<td>report-daft</td><td>daft</td>") && dom.stdout.contains("<td>report-ft</td><td>ft</td>"),
                      "the method table")

        // the screenshot: charts drawn
        let png = dir("report.png")
        let shot = try chromium(browser, page: page, mode: "--screenshot=\(png)", profile: profile)
        XCTAssertEqual(consoleLines(shot.stderr), [], "console messages while rendering the report")
        // per 600×400 region: pixels off the page background and white, and pixels of each chart palette colour (only
        // the SVG marks use those exact colours: lines, dots, bars, legend swatches)
        let script = """
        import sys, json
        from PIL import Image
        im = Image.open(sys.argv[1]).convert("RGB")
        W, H = im.size
        background = {(0xf4, 0xf5, 0xf7), (255, 255, 255)}
        palette = {(0x1f, 0x77, 0xb4): "blue", (0xff, 0x7f, 0x0e): "orange", (0x2c, 0xa0, 0x2c): "green", (0xd6, 0x27, 0x28): "red",
                   (0x94, 0x67, 0xbd): "purple", (0x8c, 0x56, 0x4b): "brown", (0x17, 0xbe, 0xcf): "cyan"}
        tiles = []
        for top in range(0, H, 400):
            for left in range(0, W, 600):
                px = list(im.crop((left, top, min(left + 600, W), min(top + 400, H))).getdata())
                marks = {}
                for p in px:
                    if p in palette:
                        marks[palette[p]] = marks.get(palette[p], 0) + 1
                tiles.append({"left": left, "top": top, "ink": sum(1 for p in px if p not in background) / len(px),
                              "colours": len(set(px)), "marks": marks})
        print(json.dumps({"size": [W, H], "tiles": tiles}))
        """
        let out = try TestPython.run(script, [png])
        print("report screenshot measurements: \(out)")
        let result = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        XCTAssertEqual(result["size"] as? [Int], [1200, 2400])
        let tiles = try XCTUnwrap(result["tiles"] as? [[String: Any]])
        // a region holds a drawn chart: more than 2% inked, in 12+ colours (anti-aliasing included), 200+ pixels of chart marks;
        // of the 12 regions only the one right of the method table has no chart (measured: the others have 264 to 28,073)
        let drawn = tiles.filter { tile in
            let marks = (tile["marks"] as? [String: Int] ?? [:]).values.reduce(0, +)
            return (tile["ink"] as? Double ?? 0) > 0.02 && (tile["colours"] as? Int ?? 0) >= 12 && marks >= 200
        }
        XCTAssertGreaterThanOrEqual(drawn.count, 10, "of 12 regions (600×400) at least 10 hold drawn charts: \(tiles)")
        let coloured = tiles.filter { (($0["marks"] as? [String: Int]) ?? [:]).values.filter { $0 >= 50 }.count >= 2 }
        XCTAssertGreaterThanOrEqual(coloured.count, 8, "regions with two or more chart colours")
        var total: [String: Int] = [:]
        for tile in tiles { for (k, v) in tile["marks"] as? [String: Int] ?? [:] { total[k, default: 0] += v } }
        for name in ["blue", "orange", "green", "red", "purple", "brown", "cyan"] {
            XCTAssertGreaterThan(total[name] ?? 0, 150, "chart colour \(name) drawn on \(total[name] ?? 0) pixels only")
        }
    }
}
