import ArgumentParser
import EmbedTuneFormats
import EmbedTuneModels
import EmbedTuneTraining
import Foundation

struct MergeSearchOptions: ParsableArguments {
    @Option(name: .spelled("search"), help: .boolean("Choose method and weights by mean NDCG@10 on --dev sets.")) var enabled = false
    @Option(name: .spelled("dev"), parsing: .singleValue,
            help: "Dev set of the i-th adapter's domain: a BEIR directory (corpus.jsonl, queries.jsonl, qrels/{dev,test}.tsv). Repeat per adapter.")
    var dev: [String] = []
    @Option(name: .spelled("search_methods"), help: "Methods tried in the grid.") var methods = "task_arithmetic,ties,dare_ties,magnitude_prune"
    @Option(name: .spelled("search_scales"), help: "Common weight scales tried in the grid.") var scales = "0.6,0.8,1.0,1.2"
    @Option(name: .spelled("search_rounds"), help: "Coordinate-ascent rounds over single weights after the grid.") var rounds = 1
    @Option(name: .spelled("max_dev_queries"), help: "Queries used per dev set (first N).") var maxQueries = 200
    @Option(name: .spelled("max_dev_documents"), help: "Corpus documents per dev set: every judged one, then the first others up to N (0: all).")
    var maxDocuments = 0
    @Option(name: .spelled("search_report"), help: "Write the per-domain Markdown table here.") var report: String?
    @Option(name: .spelled("search_objective"),
            help: "mean_ndcg (mean NDCG@10 over the domains) or min_gain_kept (the smallest share of its own adapter's gain any domain keeps).")
    var objective = "mean_ndcg"
    @Option(name: .spelled("batch_size"), help: "Texts per forward pass.") var batchSize = 32
    @Option(name: .spelled("max_length"), help: "Maximum tokens per text, special tokens included (default: the model's max_seq_length, else 512).")
    var maxLength: Int?
}

extension MergeSearchOptions {
    func settings() throws -> FusionSearch.Settings {
        var s = FusionSearch.Settings()
        s.dev = dev
        s.methods = try methods.split(separator: ",").map { name in
            guard let m = MergeMethod(rawValue: String(name)) else { throw FormatError("--search_methods: unknown method \"\(name)\"") }
            return m
        }
        s.scales = try scales.split(separator: ",").map { v in
            guard let x = Double(v) else { throw FormatError("--search_scales: \"\(v)\" is not a number") }
            return x
        }
        s.rounds = rounds; s.maxQueries = maxQueries; s.maxDocuments = maxDocuments
        s.batchSize = batchSize; s.maxLength = maxLength; s.report = report
        guard let o = FusionSearch.Objective(rawValue: objective) else {
            throw FormatError("--search_objective: unknown objective \"\(objective)\" (mean_ndcg or min_gain_kept)")
        }
        s.objective = o
        return s
    }
}
