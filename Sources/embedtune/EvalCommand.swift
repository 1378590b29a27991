import ArgumentParser
import EmbedTuneData
import EmbedTuneFormats
import EmbedTuneModels
import EmbedTuneReport
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
    @Option(name: .spelled("truncate_dim"), parsing: .singleValue,
            help: "Matryoshka: score the embeddings cut to their first D components, renormalised (repeatable: one row per model and D).")
    var truncateDim: [Int] = []
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
        if let bad = truncateDim.first(where: { $0 <= 0 }) { throw ValidationError("--truncate_dim must be positive (got \(bad))") }
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
            /// One row, or with --truncate_dim one row per dimension ("name (64d)").
            func scored(_ name: String, queries q: [Float], corpus c: [Float], dim: Int) throws -> [(name: String, metrics: [String: Double])] {
                guard !truncateDim.isEmpty else { return [(name, evaluator.score(queries: q, corpus: c, dim: dim))] }
                return try truncateDim.map { d in
                    var metrics = try evaluator.score(queries: q, corpus: c, dim: dim, truncateDim: d)
                    metrics["truncate_dim"] = Double(d)
                    return ("\(name) (\(d)d)", metrics)
                }
            }
            if let queryEmbeddings, let corpusEmbeddings {
                let q = try NPY.read(URL(fileURLWithPath: queryEmbeddings)), c = try NPY.read(URL(fileURLWithPath: corpusEmbeddings))
                guard q.rows == set.queries.count else {
                    throw FormatError("\(queryEmbeddings): \(q.rows) rows, but \(queries) has \(set.queries.count) queries")
                }
                guard c.rows == set.corpus.count else {
                    throw FormatError("\(corpusEmbeddings): \(c.rows) rows, but \(corpus) has \(set.corpus.count) documents")
                }
                guard q.columns == c.columns else { throw FormatError("query and corpus embeddings differ in width (\(q.columns) vs \(c.columns))") }
                rows += try scored("embeddings", queries: q.values, corpus: c.values, dim: q.columns)
            }
            for (mi, path) in model.enumerated() {
                let embedder = try Embedder(directory: ModelDirectory(URL(fileURLWithPath: path)))
                let variants: [String?] = mi == 0 ? [nil] + adapter.map { Optional($0) } : [nil]
                for variant in variants {
                    try embedder.setAdapter(variant.map { URL(fileURLWithPath: $0) })
                    let base = URL(fileURLWithPath: path).lastPathComponent
                    let name = variant.map { "\(base) + \(URL(fileURLWithPath: $0).lastPathComponent)" } ?? base
                    let (dim, q, c) = try evaluator.embed(embedder)
                    for row in try scored(name, queries: q, corpus: c, dim: dim) {
                        rows.append(row)
                        try store?.recordRun(dataset: dbDataset!, kind: "eval", split: dbSplit, model: path, adapter: variant, metrics: row.metrics)
                    }
                }
            }
            let evaluated = set.relevant.filter { !$0.isEmpty }.count
            let results = RetrievalResults(queries: evaluated, documents: set.corpus.count, rows: rows.map { .init(name: $0.name, metrics: $0.metrics) })
            let table = results.markdownTable()
            print(table)
            if let markdown { try table.write(toFile: markdown, atomically: true, encoding: .utf8) }
            if let output {
                let object: [String: Any] = ["queries": evaluated, "corpus": set.corpus.count,
                                             "results": rows.map { ["name": $0.name, "metrics": $0.metrics] }]
                try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: output))
            }
            if let chart { try results.barChart().svg().write(toFile: chart, atomically: true, encoding: .utf8) }
        }
    }
}
