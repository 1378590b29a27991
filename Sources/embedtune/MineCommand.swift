import ArgumentParser
import EmbedTuneData
import EmbedTuneDistributed
import EmbedTuneFormats
import EmbedTuneModels
import EmbedTuneRetrieval
import EmbedTuneTraining
import Foundation

/// `embedtune mine`: hard negatives for (anchor, positive) pairs, mirroring sentence-transformers'
/// mine_hard_negatives with exact search. Under mpirun every rank embeds a contiguous shard of the
/// queries and of the corpus; the gathered vectors are searched (deterministically, identically on
/// every rank), a reranker filter scores its share of the candidate pairs on each rank, and
/// rank 0 writes the output.
struct MineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mine", abstract: "Mine hard negatives for (anchor, positive) pairs (sentence-transformers semantics, exact search).")

    @Option(help: "Model directory or .gguf used to embed.") var model: String
    @Option(help: "A PEFT adapter to apply while mining.") var adapter: String?
    @Option(help: "Pairs file: JSONL, CSV or TSV.") var dataset: String?
    @Option(help: "Dataset store (SQLite) instead of --dataset: mine the pairs of --db_dataset's --db_split and store the rows as its triplets.")
    var db: String?
    @Option(name: .spelled("db_dataset"), help: "With --db: the dataset's name in the store.") var dbDataset: String?
    @Option(name: .spelled("db_split"), help: "With --db: the split to mine.") var dbSplit = "train"
    @Option(name: .spelled("anchor_field", "anchor_column"), help: .questionField)
    var anchorField: String?
    @Option(name: .spelled("positive_field", "positive_column"), help: .answerField)
    var positiveField: String?
    @Option(help: "Extra documents (.txt, or .jsonl with a text field) mined alongside the positives.") var corpus: String?
    @Option(help: "Output JSONL (optional with --db).") var output: String?
    @Option(name: .spelled("num_negatives"), help: "Hard negatives per anchor.") var numNegatives = 3
    @Option(name: .spelled("range_min"), help: "Skip this many of the most similar candidates.") var rangeMin = 0
    @Option(name: .spelled("range_max"), help: "Consider only this many most similar candidates.") var rangeMax: Int?
    @Option(name: .spelled("max_score"), help: "Drop candidates more similar than this.") var maxScore: Float?
    @Option(name: .spelled("min_score"), help: "Drop candidates less similar than this.") var minScore: Float?
    @Option(name: .spelled("absolute_margin"), help: "Keep a candidate only if it scores at least this much below the positive.")
    var absoluteMargin: Float?
    @Option(name: .spelled("relative_margin"), help: "Keep a candidate only if it scores at most (1 − this) × the positive's score.")
    var relativeMargin: Float?
    @Option(help: "A reranker model directory (cross-encoder or Qwen3-Reranker style) whose judgement filters the candidates: false negatives.")
    var reranker: String?
    @Option(name: .spelled("reranker_adapter"), help: "A PEFT adapter applied to --reranker.") var rerankerAdapter: String?
    @Option(name: .spelled("max_reranker_score"), help: "With --reranker: drop candidates it scores above this.") var maxRerankerScore: Float?
    @Option(name: .spelled("reranker_relative_margin"),
            help: "With --reranker: drop candidates it scores above (1 − this) × the positive's reranker score.")
    var rerankerRelativeMargin: Float?
    @Option(name: .spelled("sampling_strategy"), help: "top | random") var samplingStrategy = "top"
    @Option(name: .spelled("include_positives"), help: .boolean("Keep the positive among the candidates (sentence-transformers' include_positives; n-tuple output)."))
    var includePositives = false
    @Option(name: .spelled("output_format"), help: "triplet | n-tuple | labeled-pair | labeled-list | ms-swift") var outputFormat = "triplet"
    @Option(name: .spelled("output_scores"), help: .boolean("Write the similarity scores too.")) var outputScores = false
    @Option(name: .spelled("query_prompt"), help: "Query prefix (default: the model's \"query\" prompt).") var queryPrompt: String?
    @Option(name: .spelled("document_prompt"), help: "Document prefix (default: the model's \"document\" prompt).") var documentPrompt: String?
    @Option(name: .spelled("batch_size"), help: "Texts per forward pass.") var batchSize = 64
    @Option(name: .spelled("max_length"), help: "Maximum tokens per text, special tokens included (default: the model's max_seq_length, else 512).")
    var maxLength: Int?
    @Option(help: "Seed for --sampling_strategy random.") var seed: UInt64 = 12
    @Option(help: .boolean("No progress bars.")) var quiet = false

    func validate() throws {
        guard MiningOptions.Strategy(rawValue: samplingStrategy) != nil else { throw ValidationError("--sampling_strategy must be top or random") }
        guard MiningOptions.OutputFormat(rawValue: outputFormat) != nil else {
            throw ValidationError("--output_format must be one of \(MiningOptions.OutputFormat.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if (dataset == nil) == (db == nil) { throw ValidationError("give --dataset FILE, or --db STORE with --db_dataset NAME") }
        if (db == nil) != (dbDataset == nil) { throw ValidationError("--db and --db_dataset go together") }
        if db == nil && output == nil { throw ValidationError("give --output (or --db to store the mined rows)") }
        if db != nil && !["triplet", "n-tuple", "ms-swift"].contains(outputFormat) {
            throw ValidationError("--db stores triplet, n-tuple or ms-swift rows, not \(outputFormat)")
        }
        if reranker == nil && (maxRerankerScore != nil || rerankerRelativeMargin != nil || rerankerAdapter != nil) {
            throw ValidationError("--max_reranker_score, --reranker_relative_margin and --reranker_adapter need --reranker")
        }
        if reranker != nil && maxRerankerScore == nil && rerankerRelativeMargin == nil {
            throw ValidationError("--reranker filters with --max_reranker_score or --reranker_relative_margin: give one")
        }
        if let rangeMax, rangeMin >= rangeMax { throw ValidationError("--range_min (\(rangeMin)) must be smaller than --range_max (\(rangeMax))") }
    }

    func run() throws { try runOnEveryRank(mine) }

    func mine(_ communicator: Communicator) throws {
        let (anchorName, positiveName, anchors, positives) = try readPairs()
        let extra = try corpus.map { try readTexts($0) }
        let embedder = try Embedder(directory: ModelDirectory(URL(fileURLWithPath: model)))
        try embedder.setAdapter(adapter.map { URL(fileURLWithPath: $0) })
        var options = Embedder.Options()
        options.batchSize = batchSize
        options.maxLength = maxLength
        let dim = embedder.backbone.hiddenSize
        func embed(_ texts: [String], prefix: String, label: String) throws -> [Float] {
            options.prefix = prefix
            return try communicator.gatherRows(count: texts.count, width: dim) { shard in
                let bar = ProgressBar(total: shard.count, label: label, enabled: !quiet && communicator.isRoot && shard.count > batchSize)
                return try embedder.embed(Array(texts[shard]), options: options, progress: bar.update).values
            }
        }
        var o = MiningOptions()
        o.numNegatives = numNegatives; o.rangeMin = rangeMin; o.rangeMax = rangeMax; o.maxScore = maxScore; o.minScore = minScore
        o.absoluteMargin = absoluteMargin; o.relativeMargin = relativeMargin
        o.samplingStrategy = MiningOptions.Strategy(rawValue: samplingStrategy)!
        o.includePositives = includePositives; o.outputFormat = MiningOptions.OutputFormat(rawValue: outputFormat)!
        o.outputScores = outputScores; o.seed = seed; o.anchorColumn = anchorName; o.positiveColumn = positiveName
        o.maxRerankerScore = maxRerankerScore; o.rerankerRelativeMargin = rerankerRelativeMargin
        let rerank = try reranker.map { path -> Miner.PairScorer in
            var r = RerankerOptions()
            r.adapter = rerankerAdapter.map { URL(fileURLWithPath: $0) }
            return Miner.pairScorer(try loadReranker(ModelDirectory(URL(fileURLWithPath: path)), options: r), communicator: communicator)
        }
        let dir = embedder.directory
        let (rows, summary) = try Miner.mine(
            anchors: anchors, positives: positives, extraCorpus: extra, dim: dim,
            embedQueries: { try embed($0, prefix: queryPrompt ?? dir.queryPrompt, label: "queries") },
            embedDocuments: { try embed($0, prefix: documentPrompt ?? dir.documentPrompt, label: "corpus") },
            rerank: rerank, options: o)
        guard communicator.isRoot else { return }
        var text = ""
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        for row in rows {
            text += "{" + (try row.map { k, v in
                String(decoding: try encoder.encode(k), as: UTF8.self) + ": " + String(decoding: try encoder.encode(v), as: UTF8.self)
            }).joined(separator: ", ") + "}\n"
        }
        var wrote = [String]()
        if let output {
            try writeAtomically(Data(text.utf8), to: URL(fileURLWithPath: output))
            wrote.append(output)
        }
        if let db {
            let triplets = Self.triplets(rows)
            try DatasetStore(path: db).saveTriplets(dataset: dbDataset!, split: dbSplit, source: "mine \(model)\(adapter.map { " + " + $0 } ?? "")", triplets)
            wrote.append("\(triplets.count) triplets into \(db) (\(dbDataset!), \(dbSplit))")
        }
        let ranks = communicator.size > 1 ? " (\(communicator.size) ranks embedded shards)" : ""
        FileHandle.standardError.write(Data("\(summary)\nwrote \(wrote.joined(separator: " and "))\(ranks)\n".utf8))
    }

    /// Mined rows as training triples: (anchor, positive, negatives…) in n-tuple / ms-swift form,
    /// and consecutive triplet rows of one (anchor, positive) joined into one triple.
    static func triplets(_ rows: [[(String, JSONValue)]]) -> [Triplet] {
        var out = [Triplet]()
        for row in rows {
            let texts = row.filter { !$0.0.hasSuffix("score") && !$0.0.hasPrefix("score") }
            guard texts.count >= 2, let q = texts[0].1.string, let p = texts[1].1.string else { continue }
            var negatives = [String]()
            for (_, v) in texts.dropFirst(2) {
                if let s = v.string { negatives.append(s) } else if let list = v.array { negatives += list.compactMap(\.string) }
            }
            if let last = out.last, last.query == q, last.positive == p, texts.count == 3 {
                out[out.count - 1].negatives += negatives
            } else {
                out.append(Triplet(query: q, positive: p, negatives: negatives, origin: "mined"))
            }
        }
        return out
    }

    /// (anchor column, positive column, anchors, positives) from JSONL / CSV / TSV.
    func readPairs() throws -> (String, String, [String], [String]) {
        guard let dataset else {
            let db = self.db!, name = dbDataset!
            let pairs = try DatasetStore(path: db).pairs(dataset: name, split: dbSplit)
            guard !pairs.isEmpty else { throw FormatError("\(db): dataset \"\(name)\" has no \(dbSplit) pairs (run `embedtune data split` first?)") }
            return ("query", "response", pairs.map(\.query), pairs.map(\.positive))
        }
        let url = URL(fileURLWithPath: dataset)
        let ext = url.pathExtension.lowercased()
        let records = try TableRows.read(try TextFile.read(dataset), path: dataset, format: ["csv", "tsv"].contains(ext) ? ext : "jsonl")
            .map { (origin: $0.origin, fields: try $0.fields()) }
        guard let first = records.first?.fields else { throw FormatError(url: url, "no pairs") }
        let anchor = try PairFields.pick(anchorField, PairFields.questionNames, what: "anchor", flag: "--anchor_field",
                                         first: first, columns: [], origin: records[0].origin)
        let positive = try PairFields.pick(positiveField, PairFields.answerNames, what: "positive", flag: "--positive_field",
                                           first: first, columns: [], origin: records[0].origin)
        var anchors = [String](), positives = [String]()
        for r in records {
            anchors.append(try RowFields.text(r.fields, anchor, r.origin))
            positives.append(try RowFields.text(r.fields, positive, r.origin))
        }
        return (anchor, positive, anchors, positives)
    }
}
