import EmbedTuneFormats
import Foundation

/// The report of one training run's output directory: curves from train_log.jsonl, the run's
/// model card (data, command, metrics), its options, and — when present — the `eval` results
/// (metrics.json, else metrics.md) and the end-of-run fusion table (fusion.md).
public struct RunReport {
    public var directory: URL
    public var log: TrainLog
    /// OUTPUT_DIR/README.md, the final adapter's model card.
    public var card: String?
    /// The card's TOML options block, else the newest checkpoint's trainer_state.json options.
    public var options: JSONValue?
    public var results: RetrievalResults?
    public var resultsMarkdown: String?
    public var fusion: String?

    public static let colours = (primary: "#4e79a7", second: "#f28e2b", third: "#59a14f")

    /// `metrics`: an `eval --output` file elsewhere than OUTPUT_DIR/metrics.json.
    public static func load(_ directory: URL, metrics: URL? = nil) throws -> RunReport {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw FormatError(url: directory, "no such directory")
        }
        func optionalText(_ name: String) -> String? {
            try? String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
        }
        var report = RunReport(directory: directory, log: try TrainLog.load(directory.appendingPathComponent("train_log.jsonl")))
        report.card = optionalText("README.md")
        report.options = report.card.flatMap(optionsFromCard) ?? newestCheckpointOptions(directory)
        let metricsURL = metrics ?? directory.appendingPathComponent("metrics.json")
        if metrics != nil || FileManager.default.fileExists(atPath: metricsURL.path) {
            report.results = try RetrievalResults(json: JSONValue.load(metricsURL), file: metricsURL.path)
        } else {
            report.resultsMarkdown = optionalText("metrics.md")
        }
        report.fusion = optionalText("fusion.md")
        return report
    }

    init(directory: URL, log: TrainLog) { self.directory = directory; self.log = log }

    /// A `## heading` section of the model card, without its heading.
    public func cardSection(_ heading: String) -> String? {
        guard let card, let start = card.range(of: "\n## \(heading)\n") else { return nil }
        let rest = card[start.upperBound...]
        let end = rest.range(of: "\n## ")?.lowerBound ?? rest.endIndex
        return String(rest[..<end]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func optionsFromCard(_ card: String) -> JSONValue? {
        guard let start = card.range(of: "```toml\n"), let end = card[start.upperBound...].range(of: "```") else { return nil }
        return try? TOML.parse(String(card[start.upperBound..<end.lowerBound]), file: "README.md")
    }

    static func newestCheckpointOptions(_ directory: URL) -> JSONValue? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        let newest = names.compactMap { name in name.hasPrefix("checkpoint-") ? Int(name.dropFirst("checkpoint-".count)) : nil }.max()
        return newest.flatMap { try? JSONValue.load(directory.appendingPathComponent("checkpoint-\($0)/trainer_state.json")) }?["options"]
    }

    /// Loss, τ, learning rate and held-out retrieval against the optimiser step.
    public func curves() -> [LineChart] {
        let steps = log.steps, evals = log.evaluations
        func stepSeries(_ name: String, _ value: (TrainLog.Step) -> Double, colour: String = Self.colours.primary) -> LineChart.Series {
            .init(name: name, points: steps.map { (Double($0.step), value($0)) }, colour: colour)
        }
        func evalSeries(_ name: String, _ value: (TrainLog.Evaluation) -> Double, colour: String) -> LineChart.Series {
            .init(name: name, points: evals.map { (Double($0.step), value($0)) }, colour: colour, markers: true)
        }
        var loss = [stepSeries("training loss", \.loss)]
        if !evals.isEmpty { loss.append(evalSeries("held-out loss", \.loss, colour: Self.colours.second)) }
        return [
            LineChart(title: "InfoNCE loss", xLabel: "step", series: loss),
            LineChart(title: "Temperature τ", xLabel: "step", series: [stepSeries("τ", \.tau)]),
            LineChart(title: "Learning rate", xLabel: "step", series: [stepSeries("learning rate", \.lr)]),
            LineChart(title: "Held-out retrieval (dev)", xLabel: "step", series: [
                evalSeries("NDCG@10", \.ndcg10, colour: Self.colours.primary), evalSeries("Recall@5", \.recall5, colour: Self.colours.second),
                evalSeries("MRR@10", \.mrr10, colour: Self.colours.third),
            ]),
        ]
    }

    /// One line per fact a reader wants first: steps, the loss, held-out NDCG@10 before and best.
    public func headline() -> [String] {
        var lines = [directory.path]
        if let first = log.steps.first, let last = log.steps.last {
            lines.append(String(format: "%d optimiser steps; training loss %.4f → %.4f", log.steps.count, first.loss, last.loss))
        }
        if let base = log.evaluations.first(where: { $0.step == 0 }),
           let best = log.evaluations.filter({ $0.step > 0 }).max(by: { $0.ndcg10 < $1.ndcg10 }) {
            lines.append(String(format: "held-out NDCG@10 %.4f (base) → %.4f (best, step %d) on %d queries",
                                base.ndcg10, best.ndcg10, best.step, best.rows))
        }
        return lines
    }

    public func html() -> String {
        var page = HTMLPage(title: "EmbedTune run: \(directory.lastPathComponent)")
        page.subtitle = headline()
        page.sections.append(.init(heading: "Curves", body: HTMLPage.chartGrid(curves().map { $0.svg() })))
        var run = ""
        if let data = cardSection("Training data") { run += "<h3>Training data</h3>\n" + HTMLPage.markdown(data) }
        if let command = cardSection("Command") { run += "<h3>Command</h3>\n" + HTMLPage.markdown(command) }
        if let metrics = cardSection("Metrics") { run += "<h3>Held-out metrics of the final adapter</h3>\n" + HTMLPage.markdown(metrics) }
        if !run.isEmpty { page.sections.append(.init(heading: "Run", body: run)) }
        if let results {
            page.sections.append(.init(heading: "Evaluation (embedtune eval)",
                                       body: HTMLPage.markdown(results.markdownTable()) + HTMLPage.chartGrid([results.barChart().svg()])))
        } else if let resultsMarkdown {
            page.sections.append(.init(heading: "Evaluation (embedtune eval)", body: HTMLPage.markdown(resultsMarkdown)))
        }
        if let fusion { page.sections.append(.init(heading: "Fusion", body: HTMLPage.markdown(fusion))) }
        page.sections.append(.init(heading: "Options", body: options.map { HTMLPage.keyValueTable(Self.flatten($0)) }
            ?? "<p class=\"muted\">No options found (no model card with an options block, no checkpoint).</p>\n"))
        return page.render()
    }

    /// Options as (key, value) rows; a nested table's keys become `table.key`.
    static func flatten(_ options: JSONValue, prefix: String = "") -> [(String, String)] {
        (options.object ?? [:]).sorted { $0.key < $1.key }.flatMap { key, value -> [(String, String)] in
            if value.object != nil { return flatten(value, prefix: "\(prefix)\(key).") }
            return [("\(prefix)\(key)", text(value))]
        }
    }

    static func text(_ value: JSONValue) -> String {
        switch value {
        case .null: return ""
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return "\(i)"
        case .double(let d): return "\(d)"
        case .string(let s): return s.isEmpty ? "\"\"" : s
        case .array(let items): return "[" + items.map(text).joined(separator: ", ") + "]"
        case .object: return "{…}"
        }
    }
}
