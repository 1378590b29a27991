import ArgumentParser
import EmbedTuneData
import EmbedTuneFormats
import EmbedTuneModels
import EmbedTuneRetrieval
import EmbedTuneTraining
import Foundation

/// `embedtune eval`: retrieval metrics (sentence-transformers' InformationRetrievalEvaluator keys)
/// for one or more models / adapters, or precomputed embeddings; JSON, Markdown and an SVG chart.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Retrieval evaluation (NDCG@10, Recall@k, MRR@10, MAP@100, …) on BEIR-style files.")

    @Option(help: "corpus.jsonl ({_id, title, text}).") var corpus: String?
    @Option(help: "queries.jsonl ({_id, text}).") var queries: String?
    @Option(help: "qrels TSV (query-id, corpus-id, score).") var qrels: String?
    @Option(help: "Dataset store (SQLite) instead of BEIR files: evaluates --db_dataset's --db_split and records the runs.") var db: String?
    @Option(name: .spelled("db_dataset"), help: "With --db: the dataset's name in the store.") var dbDataset: String?
    @Option(name: .spelled("db_split", "split"), help: "With --db: the split to evaluate (test, train, all).") var dbSplit = "test"
    @Option(parsing: .singleValue, help: "Model directory or .gguf (repeatable: one row each).") var model: [String] = []
    @Option(parsing: .singleValue, help: "PEFT adapter for the first model (repeatable: one row each).") var adapter: [String] = []
    @Option(name: .spelled("query_embeddings"), help: "Precomputed query embeddings (.npy, rows in queries.jsonl order).")
    var queryEmbeddings: String?
    @Option(name: .spelled("corpus_embeddings"), help: "Precomputed corpus embeddings (.npy, rows in corpus.jsonl order).")
    var corpusEmbeddings: String?
    @Option(name: .spelled("query_prompt"), help: "Query prefix (default: the model's \"query\" prompt).") var queryPrompt: String?
    @Option(name: .spelled("document_prompt"), help: "Document prefix (default: the model's \"document\" prompt).") var documentPrompt: String?
    @Option(name: .spelled("batch_size"), help: "Texts per forward pass.") var batchSize = 32
    @Option(name: .spelled("max_length"), help: "Maximum tokens per text, special tokens included (default: the model's max_seq_length, else 512).") var maxLength: Int?
    @Option(help: "Write all metrics as JSON here.") var output: String?
    @Option(help: "Write the Markdown table here (it is printed too).") var markdown: String?
    @Option(help: "Write an SVG bar chart (NDCG@10, Recall@5, MRR@10 per model) here.") var chart: String?

    func validate() throws {
        if db != nil {
            if dbDataset == nil { throw ValidationError("--db needs --db_dataset") }
            if corpus != nil || queries != nil || qrels != nil { throw ValidationError("give --db/--db_dataset or --corpus/--queries/--qrels, not both") }
        } else if corpus == nil || queries == nil || qrels == nil {
            throw ValidationError("give --corpus, --queries and --qrels (BEIR files), or --db and --db_dataset")
        }
        if (queryEmbeddings == nil) != (corpusEmbeddings == nil) {
            throw ValidationError("--query_embeddings and --corpus_embeddings go together")
        }
        if model.isEmpty && queryEmbeddings == nil { throw ValidationError("give --model, or --query_embeddings and --corpus_embeddings") }
        if !adapter.isEmpty && model.isEmpty { throw ValidationError("--adapter needs --model") }
    }

    func run() throws {
        try runReportingErrors {
            let store = try db.map { try DatasetStore(path: $0) }
            let set = try store.map { try $0.retrievalSet(dataset: dbDataset!, split: dbSplit == "all" ? nil : dbSplit) }
                ?? RetrievalSet.loadBEIR(corpus: corpus!, queries: queries!, qrels: qrels!)
            let queries = self.queries ?? "\(dbDataset ?? "") (\(dbSplit))", corpus = self.corpus ?? "\(dbDataset ?? "") corpus"
            var evaluator = EmbeddingEvaluator(set: set)
            evaluator.batchSize = batchSize
            evaluator.maxLength = maxLength
            evaluator.queryPrompt = queryPrompt
            evaluator.documentPrompt = documentPrompt
            var rows: [(name: String, metrics: [String: Double])] = []
            if let queryEmbeddings, let corpusEmbeddings {
                let q = try NPY.read(URL(fileURLWithPath: queryEmbeddings)), c = try NPY.read(URL(fileURLWithPath: corpusEmbeddings))
                guard q.rows == set.queries.count else {
                    throw CLIError("\(queryEmbeddings): \(q.rows) rows, but \(queries) has \(set.queries.count) queries")
                }
                guard c.rows == set.corpus.count else {
                    throw CLIError("\(corpusEmbeddings): \(c.rows) rows, but \(corpus) has \(set.corpus.count) documents")
                }
                guard q.columns == c.columns else { throw CLIError("query and corpus embeddings differ in width (\(q.columns) vs \(c.columns))") }
                rows.append(("embeddings", evaluator.score(queries: q.values, corpus: c.values, dim: q.columns)))
            }
            for (mi, path) in model.enumerated() {
                let embedder = try Embedder(directory: ModelDirectory(URL(fileURLWithPath: path)))
                let variants: [String?] = mi == 0 ? [nil] + adapter.map { Optional($0) } : [nil]
                for variant in variants {
                    try embedder.setAdapter(variant.map { URL(fileURLWithPath: $0) })
                    let base = URL(fileURLWithPath: path).lastPathComponent
                    let name = variant.map { "\(base) + \(URL(fileURLWithPath: $0).lastPathComponent)" } ?? base
                    rows.append((name, try evaluator.evaluate(embedder)))
                    try store?.recordRun(dataset: dbDataset!, kind: "eval", split: dbSplit, model: path, adapter: variant, metrics: rows.last!.metrics)
                }
            }
            let evaluated = set.relevant.filter { !$0.isEmpty }.count
            let table = markdownTable(rows, queries: evaluated, documents: set.corpus.count)
            print(table)
            if let markdown { try table.write(toFile: markdown, atomically: true, encoding: .utf8) }
            if let output {
                let object: [String: Any] = ["queries": evaluated, "corpus": set.corpus.count,
                                             "results": rows.map { ["name": $0.name, "metrics": $0.metrics] }]
                try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: output))
            }
            if let chart { try barChart(rows).write(toFile: chart, atomically: true, encoding: .utf8) }
        }
    }

    static let headline = [("NDCG@10", "cosine_ndcg@10"), ("Recall@5", "cosine_recall@5"), ("MRR@10", "cosine_mrr@10"),
                           ("Accuracy@1", "cosine_accuracy@1"), ("MAP@100", "cosine_map@100")]

    func markdownTable(_ rows: [(name: String, metrics: [String: Double])], queries: Int, documents: Int) -> String {
        var s = "| model (\(queries) queries, \(documents) documents) | " + Self.headline.map(\.0).joined(separator: " | ") + " |\n"
        s += "|---|" + Self.headline.map { _ in "---:" }.joined(separator: "|") + "|\n"
        for r in rows {
            s += "| \(r.name) | " + Self.headline.map { String(format: "%.4f", r.metrics[$0.1] ?? .nan) }.joined(separator: " | ") + " |\n"
        }
        return s
    }

    /// Grouped bars, metrics on the x axis and one colour per model, as the seed document's chart.
    func barChart(_ rows: [(name: String, metrics: [String: Double])]) -> String {
        let metrics = Array(Self.headline.prefix(3))
        let width = 720.0, height = 420.0, left = 60.0, bottom = 60.0, top = 50.0
        let plotW = width - left - 20, plotH = height - top - bottom
        let colours = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948"]
        let group = plotW / Double(metrics.count), bar = group * 0.8 / Double(max(rows.count, 1))
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        svg += "<text x=\"\(width / 2)\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">Domain Search Performance Comparison</text>\n"
        for tick in stride(from: 0.0, through: 1.0, by: 0.2) {
            let y = top + plotH * (1 - tick)
            svg += "<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(left + plotW)\" y2=\"\(y)\" stroke=\"#ddd\"/>"
            svg += "<text x=\"\(left - 8)\" y=\"\(y + 4)\" text-anchor=\"end\">\(String(format: "%.1f", tick))</text>\n"
        }
        for (mi, m) in metrics.enumerated() {
            let x0 = left + Double(mi) * group + group * 0.1
            for (ri, r) in rows.enumerated() {
                let v = max(0, min(1, r.metrics[m.1] ?? 0))
                let x = x0 + Double(ri) * bar, h = plotH * v
                svg += "<rect x=\"\(x)\" y=\"\(top + plotH - h)\" width=\"\(bar * 0.95)\" height=\"\(h)\" fill=\"\(colours[ri % colours.count])\"/>"
                svg += "<text x=\"\(x + bar * 0.475)\" y=\"\(top + plotH - h - 4)\" text-anchor=\"middle\" font-size=\"10\">\(String(format: "%.3f", v))</text>\n"
            }
            svg += "<text x=\"\(left + Double(mi) * group + group / 2)\" y=\"\(top + plotH + 20)\" text-anchor=\"middle\">\(m.0)</text>\n"
        }
        for (ri, r) in rows.enumerated() {
            let y = height - 18.0, x = left + Double(ri) * 150
            svg += "<rect x=\"\(x)\" y=\"\(y - 10)\" width=\"12\" height=\"12\" fill=\"\(colours[ri % colours.count])\"/>"
            svg += "<text x=\"\(x + 18)\" y=\"\(y)\">\(r.name.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;"))</text>\n"
        }
        return svg + "</svg>\n"
    }
}
