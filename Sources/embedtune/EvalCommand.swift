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
    @Option(help: "A reranker (Qwen3-Reranker *ForCausalLM or BERT/XLM-R cross-encoder directory): each row is followed by its reranked row.")
    var reranker: String?
    @Option(name: .spelled("reranker_adapter"), help: "PEFT adapter for --reranker.") var rerankerAdapter: String?
    @Option(name: .spelled("rerank_top_k"), help: "First-stage hits per query the reranker re-scores; the rest keep their order after them.")
    var rerankTopK = 50
    @Option(name: .spelled("rerank_first_stage_weight"),
            help: "Share of the first-stage score in the reranked order, in [0, 1]: 0 = the reranker alone; else both scores are standardised per query and mixed.")
    var rerankFirstStageWeight: Float = 0
    @Option(name: .spelled("reranker_instruction"), help: "Task instruction for a Qwen reranker (default: its own).") var rerankerInstruction: String?
    @Option(name: .spelled("truncate_dim"), parsing: .singleValue,
            help: "Matryoshka: score the embeddings cut to their first D components, renormalised (repeatable: one row per model and D).")
    var truncateDim: [Int] = []
    @Option(parsing: .singleValue,
            help: "Also score the corpus quantised to int8, uint8, binary or ubinary (ranges calibrated on the corpus), searched in that precision and rescored by the float queries (repeatable: one row per precision).")
    var precision: [EmbeddingPrecision] = []
    @Option(name: .spelled("rescore_multiplier"),
            help: "With --precision: the float queries rescore the quantised search's best 10 × this (sentence-transformers' rescore_multiplier); 0 keeps the quantised scores. Metrics deeper than 10 see the rest of the quantised order after them.")
    var rescoreMultiplier = 4
    @Option(name: .spelled("rescore_with"),
            help: "float: rescore against the float corpus embeddings (only the candidates' rows are read); stored: against the quantised codes, decoded (sentence-transformers' semantics).")
    var rescoreWith = QuantizedSearch.Rescoring.float
    @Option(name: .spelled("binary_centering"),
            help: .boolean("With --precision binary/ubinary: the bits are signs of the embeddings minus the corpus mean (false: of the embeddings themselves, as sentence-transformers)."))
    var binaryCentering = true
    @OptionGroup var int8Options: Int8Options
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
        if reranker == nil && (rerankerAdapter != nil || rerankerInstruction != nil) {
            throw ValidationError("--reranker_adapter and --reranker_instruction need --reranker")
        }
        guard rerankTopK > 0 else { throw ValidationError("--rerank_top_k must be at least 1") }
        guard (0...1).contains(rerankFirstStageWeight) else {
            throw ValidationError("--rerank_first_stage_weight must be in [0, 1] (got \(rerankFirstStageWeight))")
        }
        if reranker == nil && rerankFirstStageWeight != 0 { throw ValidationError("--rerank_first_stage_weight needs --reranker") }
        if let bad = truncateDim.first(where: { $0 <= 0 }) { throw ValidationError("--truncate_dim must be positive (got \(bad))") }
        if reranker != nil && !truncateDim.isEmpty { throw ValidationError("--truncate_dim and --reranker go in separate runs") }
        if !precision.isEmpty && (reranker != nil || !truncateDim.isEmpty) {
            throw ValidationError("--precision goes in a run of its own (without --reranker or --truncate_dim)")
        }
        guard rescoreMultiplier >= 0 else { throw ValidationError("--rescore_multiplier must be 0 or more (got \(rescoreMultiplier))") }
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
            var rerankerOptions = RerankerOptions()
            rerankerOptions.adapter = rerankerAdapter.map { URL(fileURLWithPath: $0) }
            rerankerOptions.instruction = rerankerInstruction
            let secondStage = try reranker.map { try loadReranker(ModelDirectory(URL(fileURLWithPath: $0)), options: rerankerOptions) }
            let rerankerName = ([reranker] + [rerankerAdapter]).compactMap { $0.map { URL(fileURLWithPath: $0).lastPathComponent } }
                .joined(separator: " + ")
            var reranking = RerankingEvaluator(set: set, topK: rerankTopK)
            reranking.firstStageWeight = rerankFirstStageWeight
            reranking.metrics = evaluator.metrics
            var rows: [(name: String, metrics: [String: Double], reranked: Bool)] = []
            /// The first-stage row of these embeddings and, with a reranker, its reranked row; with
            /// --truncate_dim one row per dimension ("name (64d)").
            func addRows(_ name: String, queries q: [Float], corpus c: [Float], dim: Int) throws {
                if !truncateDim.isEmpty {
                    for d in truncateDim {
                        var metrics = try evaluator.score(queries: q, corpus: c, dim: dim, truncateDim: d)
                        metrics["truncate_dim"] = Double(d)
                        rows.append(("\(name) (\(d)d)", metrics, false))
                    }
                    return
                }
                if !precision.isEmpty {
                    rows.append((name, evaluator.score(queries: q, corpus: c, dim: dim), false))
                    for p in precision where p != .float32 {
                        let m = rescoreMultiplier > 0 ? rescoreMultiplier : nil
                        var metrics = try evaluator.score(queries: q, corpus: c, dim: dim, precision: p, rescoreMultiplier: m, rescore: rescoreWith,
                                                          centreBinary: binaryCentering)
                        metrics["rescore_multiplier"] = Double(rescoreMultiplier)
                        let centred = !p.needsRanges && binaryCentering ? ", centred" : ""
                        let how = centred + (m.map { ", top 10 × \($0) rescored against the \(rescoreWith == .float ? "float corpus" : "stored codes")" } ?? "")
                        rows.append(("\(name) (\(p.rawValue)\(how))", metrics, false))
                    }
                    return
                }
                guard let secondStage else { rows.append((name, evaluator.score(queries: q, corpus: c, dim: dim), false)); return }
                var bar: ProgressBar?
                reranking.progress = { done, total in
                    if bar == nil { bar = ProgressBar(total: total, label: "rerank \(name)", enabled: true) }
                    bar!.update(done)
                }
                let (first, second) = try reranking.evaluate(queries: q, corpus: c, dim: dim, reranker: secondStage)
                rows.append((name, first, false))
                let mix = rerankFirstStageWeight > 0 ? ", first stage × \(rerankFirstStageWeight)" : ""
                rows.append(("\(name) → \(rerankerName) (top \(rerankTopK)\(mix))", second, true))
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
                try addRows("embeddings", queries: q.values, corpus: c.values, dim: q.columns)
            }
            for (mi, path) in model.enumerated() {
                let embedder = try Embedder(directory: ModelDirectory(URL(fileURLWithPath: path)))
                try int8Options.apply(to: embedder)
                let variants: [String?] = mi == 0 ? [nil] + adapter.map { Optional($0) } : [nil]
                for variant in variants {
                    try embedder.setAdapter(variant.map { URL(fileURLWithPath: $0) })
                    let base = URL(fileURLWithPath: path).lastPathComponent
                    let name = (variant.map { "\(base) + \(URL(fileURLWithPath: $0).lastPathComponent)" } ?? base) + (int8Options.int8 ? " (int8)" : "")
                    let (dim, q, c) = try evaluator.embed(embedder)
                    let first = rows.count
                    try addRows(name, queries: q, corpus: c, dim: dim)
                    for row in rows[first...] {
                        try store?.recordRun(dataset: dbDataset!, kind: row.reranked ? "eval-rerank" : "eval", split: dbSplit,
                                             model: row.reranked ? "\(path) → \(reranker!)" : path, adapter: variant, metrics: row.metrics)
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
                                             "results": rows.map { row -> [String: Any] in
                                                 var r: [String: Any] = ["name": row.name, "metrics": row.metrics]
                                                 if row.reranked {
                                                     r["reranker"] = reranker!
                                                     r["rerank_top_k"] = rerankTopK
                                                     r["rerank_first_stage_weight"] = Double(rerankFirstStageWeight)
                                                     if let rerankerAdapter { r["reranker_adapter"] = rerankerAdapter }
                                                 }
                                                 return r
                                             }]
                try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: output))
            }
            if let chart { try results.barChart().svg().write(toFile: chart, atomically: true, encoding: .utf8) }
        }
    }
}
