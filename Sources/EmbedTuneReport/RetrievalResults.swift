import EmbedTuneFormats
import Foundation

/// The rows of `embedtune eval`: one model or adapter each, with sentence-transformers' metric
/// keys. Rendered as the Markdown table the command prints and as the bar chart it draws; read
/// back from its metrics.json for the run report.
public struct RetrievalResults {
    public struct Row {
        public var name: String
        public var metrics: [String: Double]
        public init(name: String, metrics: [String: Double]) { self.name = name; self.metrics = metrics }
    }

    /// Column title and metric key of the table; the chart shows the first three.
    public static let headline = [("NDCG@10", "cosine_ndcg@10"), ("Recall@5", "cosine_recall@5"), ("MRR@10", "cosine_mrr@10"),
                                  ("Accuracy@1", "cosine_accuracy@1"), ("MAP@100", "cosine_map@100")]

    public var queries: Int
    public var documents: Int
    public var rows: [Row]

    public init(queries: Int, documents: Int, rows: [Row]) {
        self.queries = queries; self.documents = documents; self.rows = rows
    }

    /// metrics.json as `eval --output` writes it: {queries, corpus, results: [{name, metrics}]}.
    public init(json: JSONValue, file: String) throws {
        guard let results = json["results"]?.array else { throw FormatError(file: file, item: "results", "missing or not an array") }
        self.init(queries: json["queries"]?.int ?? 0, documents: json["corpus"]?.int ?? 0, rows: try results.enumerated().map { i, r in
            guard let name = r["name"]?.string, let metrics = r["metrics"]?.object else {
                throw FormatError(file: file, item: "results[\(i)]", "needs a name and a metrics object")
            }
            return Row(name: name, metrics: metrics.compactMapValues(\.double))
        })
    }

    public func markdownTable() -> String {
        let headline = Self.headline
        var s = "| model (\(queries) queries, \(documents) documents) | " + headline.map(\.0).joined(separator: " | ") + " |\n"
        s += "|---|" + headline.map { _ in "---:" }.joined(separator: "|") + "|\n"
        for r in rows {
            s += "| \(r.name) | " + headline.map { String(format: "%.4f", r.metrics[$0.1] ?? .nan) }.joined(separator: " | ") + " |\n"
        }
        return s
    }

    public func barChart() -> BarChart {
        let shown = Self.headline.prefix(3)
        return BarChart(categories: shown.map(\.0),
                        series: rows.map { r in .init(name: r.name, values: shown.map { r.metrics[$0.1] ?? 0 }) })
    }
}
