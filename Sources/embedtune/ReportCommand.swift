import ArgumentParser
import EmbedTuneFormats
import EmbedTuneReport
import Foundation

/// `embedtune report`: one self-contained HTML page of a training run's output directory.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "An HTML report of a training run: loss, τ, learning rate and held-out NDCG@10 curves, options, eval and fusion tables.",
        discussion: """
        Reads OUTPUT_DIR/train_log.jsonl (required), the model card OUTPUT_DIR/README.md, metrics.json or \
        metrics.md (`embedtune eval --output/--markdown`) and fusion.md when present. The page has no \
        external assets: inline CSS and SVG.
        """)

    @Argument(help: "The training run's output_dir.") var outputDir: String
    @Option(help: "Where to write the HTML (default OUTPUT_DIR/report.html).") var output: String?
    @Option(help: "An `embedtune eval --output` JSON file to include (default OUTPUT_DIR/metrics.json when present).")
    var metrics: String?

    func run() throws {
        try runReportingErrors {
            let directory = URL(fileURLWithPath: outputDir)
            let report = try RunReport.load(directory, metrics: metrics.map { URL(fileURLWithPath: $0) })
            let target = output.map { URL(fileURLWithPath: $0) } ?? directory.appendingPathComponent("report.html")
            try writeAtomically(Data(report.html().utf8), to: target)
            print("report: \(target.path) (\(report.log.steps.count) steps, \(report.log.evaluations.count) evaluations)")
        }
    }
}
