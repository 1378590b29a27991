import EmbedTuneFormats
import EmbedTuneReport
import Foundation
import Testing

@Suite("Run report", .serialized)
struct ReportTests {
    /// A log as the trainer writes it: an evaluation of the base model, five steps (one with a NaN
    /// gradient norm), evaluations at steps 2 and 4.
    static let log = """
    {"documents":12,"loss":2.5,"margin":-0.1,"mean_hardest_negative":0.5,"mean_positive":0.4,"mrr@10":0.2,"ndcg@10":0.25,"recall@5":0.3,"rows":12,"step":0}
    {"epoch":0.2,"examples":8,"grad_norm":1.5,"loss":2.4,"lr":0.0005,"ms_per_step":10,"step":1,"tau":0.05,"tokens_per_s":1000}
    {"epoch":0.4,"examples":8,"grad_norm":"nan","loss":2.2,"lr":0.001,"ms_per_step":10,"step":2,"tau":0.05,"tokens_per_s":1000}
    {"documents":12,"loss":2.1,"margin":0,"mean_hardest_negative":0.5,"mean_positive":0.5,"mrr@10":0.3,"ndcg@10":0.35,"recall@5":0.4,"rows":12,"step":2}
    {"epoch":0.6,"examples":8,"grad_norm":1.1,"loss":1.9,"lr":0.0008,"ms_per_step":10,"step":3,"tau":0.049,"tokens_per_s":1000}
    {"epoch":0.8,"examples":8,"grad_norm":0.9,"loss":1.7,"lr":0.0004,"ms_per_step":10,"step":4,"tau":0.048,"tokens_per_s":1000}
    {"documents":12,"loss":1.8,"margin":0.1,"mean_hardest_negative":0.4,"mean_positive":0.5,"mrr@10":0.4,"ndcg@10":0.45,"recall@5":0.5,"rows":12,"step":4}
    {"epoch":1.0,"examples":8,"grad_norm":0.8,"loss":1.6,"lr":0.0001,"ms_per_step":10,"step":5,"tau":0.047,"tokens_per_s":1000}

    """

    func runDirectory(log: String = Self.log) throws -> URL {
        let dir = try Paths.temporaryDirectory()
        try log.write(to: dir.appendingPathComponent("train_log.jsonl"), atomically: true, encoding: .utf8)
        return dir
    }

    /// The point count of every polyline, in document order.
    func polylinePointCounts(_ html: String) -> [Int] {
        html.components(separatedBy: "<polyline").dropFirst().map { tail in
            let points = tail.components(separatedBy: "points=\"")[1].prefix { $0 != "\"" }
            return points.split(separator: " ").count
        }
    }

    @Test("the report draws a polyline per curve with one point per logged step or evaluation, and fetches nothing")
    func curves() throws {
        let dir = try runDirectory()
        let html = try RunReport.load(dir).html()
        // loss: training (5 steps) and held-out (3 evaluations); τ; learning rate; NDCG@10, Recall@5, MRR@10.
        #expect(polylinePointCounts(html) == [5, 3, 5, 5, 3, 3, 3])
        #expect(html.components(separatedBy: "<svg").count - 1 == 4)
        for external in ["<script", "<link", "src=", "href=", "url("] { #expect(!html.contains(external), "\(external)") }
        #expect(html.contains("held-out NDCG@10 0.2500 (base) → 0.4500 (best, step 4) on 12 queries"))
    }

    @Test("a non-finite value leaves its point out, and a flat series still draws")
    func nonFinite() throws {
        let chart = LineChart(title: "τ", xLabel: "step", series: [
            .init(name: "τ", points: [(1, 0.05), (2, .nan), (3, 0.05), (4, .infinity)]),
        ])
        let svg = chart.svg()
        #expect(polylinePointCounts(svg) == [2])
        #expect(!svg.contains("nan") && !svg.contains("inf"))
    }

    @Test("eval results, fusion table and the model card's options come into the page")
    func optionalParts() throws {
        let dir = try runDirectory()
        let metrics = #"{"queries": 10, "corpus": 50, "results": [{"name": "base", "metrics": {"cosine_ndcg@10": 0.5}}, {"name": "base + lora", "metrics": {"cosine_ndcg@10": 0.7}}]}"#
        try metrics.write(to: dir.appendingPathComponent("metrics.json"), atomically: true, encoding: .utf8)
        try "| domain | base | fused |\n|---|---:|---:|\n| faq | 0.5 | 0.6 |\n".write(to: dir.appendingPathComponent("fusion.md"), atomically: true, encoding: .utf8)
        try "---\nbase_model: m\n---\n\n# t\n\n## Options\n\n```toml\nlora_r = 4\n\n[infonce]\nuse_batch = true\n```\n"
            .write(to: dir.appendingPathComponent("README.md"), atomically: true, encoding: .utf8)
        let html = try RunReport.load(dir).html()
        #expect(html.contains("<td>base + lora</td><td class=\"num\">0.7000</td>"))
        #expect(html.contains("<td>faq</td><td class=\"num\">0.5</td><td class=\"num\">0.6</td>"))
        #expect(html.contains("<tr><th>infonce.use_batch</th><td>true</td></tr>") && html.contains("<tr><th>lora_r</th><td>4</td></tr>"))
        #expect(html.components(separatedBy: "<svg").count - 1 == 5, "the four curves and eval's bar chart")
    }

    @Test("a malformed train_log.jsonl line, a missing log or directory is one error naming the file (and line)")
    func badInput() throws {
        let broken = try runDirectory(log: Self.log.replacingOccurrences(of: "\"step\":3,", with: "\"step\":3"))
        let path = broken.appendingPathComponent("train_log.jsonl").path
        func loadError(_ dir: URL) -> String? {
            do { _ = try RunReport.load(dir); return nil } catch { return "\(error)" }
        }
        #expect(loadError(broken)?.hasPrefix("\(path):5: invalid JSON") == true, "\(loadError(broken) ?? "no error")")
        let unknown = try runDirectory(log: #"{"step": 1, "loss": 2}"# + "\n")
        #expect(loadError(unknown)?.hasSuffix("train_log.jsonl:1: neither a step record (with \"lr\") nor an evaluation (with \"ndcg@10\")") == true)
        let missingField = try runDirectory(log: #"{"step": 1, "loss": 2, "lr": 0.1}"# + "\n")
        #expect(loadError(missingField)?.hasSuffix("train_log.jsonl:1: epoch: missing") == true)

        let r = try runCLI(["report", broken.path])
        #expect(r.status == 1)
        #expect(r.stderr.hasPrefix("embedtune: error: \(path):5: invalid JSON"), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1)
        let empty = try Paths.temporaryDirectory()
        let noLog = try runCLI(["report", empty.path])
        #expect(noLog.status == 1 && noLog.stderr.contains("train_log.jsonl: missing"))
        let noDir = try runCLI(["report", empty.appendingPathComponent("absent").path])
        #expect(noDir.status == 1 && noDir.stderr.contains("absent: no such directory"))
    }

    @Test("embedtune report writes OUTPUT_DIR/report.html, or --output")
    func command() throws {
        let dir = try runDirectory()
        let r = try runCLI(["report", dir.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("report.html").path))
        let elsewhere = dir.appendingPathComponent("elsewhere.html")
        #expect(try runCLI(["report", dir.path, "--output", elsewhere.path]).status == 0)
        #expect(try String(contentsOf: elsewhere, encoding: .utf8).hasPrefix("<!DOCTYPE html>"))
    }
}
