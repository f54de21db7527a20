import ArgumentParser
import Foundation
import DaftReport

/// `daft report`: one self-contained HTML page (inline SVG charts, no network) of one or more run directories.
struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write an HTML report (inline SVG charts, no network) of one or more runs' --out directories.",
        discussion: "Each DIR needs metrics.jsonl or results.json (a run still in progress has only metrics.jsonl and shows what it has). With several runs the page starts with a method table and an ID vs mean-OOD scatter.")
    @Argument(help: "Run directories (a finetune's --out)") var directories: [String]
    @Option(help: "Output HTML file") var out: String = "report.html"
    @Option(help: "Page title") var title: String = "daft report"

    func run() throws {
        var runs: [ReportRun] = []
        for (directory, label) in zip(directories, ReportRun.uniqueLabels(directories)) {
            var run = try ReportRun.load(directory)
            run.label = label
            runs.append(run)
        }
        let html = ReportPage.render(runs: runs, title: title)
        do {
            try Data(html.utf8).write(to: URL(fileURLWithPath: out), options: .atomic)
        } catch {
            throw CLIError("\(out): cannot write the report (\(error.localizedDescription))")
        }
        print("report: \(runs.count) run(s) → \(out) (\(html.utf8.count / 1024) KB)")
    }
}
