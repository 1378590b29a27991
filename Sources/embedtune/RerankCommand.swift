import ArgumentParser
import EmbedTuneFormats
import EmbedTuneModels
import EmbedTuneRetrieval
import Foundation

/// `embedtune rerank`: scores each query's candidates with a reranker (a Qwen3-Reranker-style causal
/// LM or a BERT / XLM-R cross-encoder, chosen by the model's config.json) and writes the best
/// `top_k` of each, best first.
struct RerankCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rerank",
        abstract: "Rerank candidates with a Qwen3-Reranker (qwen3/qwen2 *ForCausalLM) or a cross-encoder (BERT/XLM-R *ForSequenceClassification); JSONL in and out.",
        discussion: """
        --queries: one {"id": …, "text": …} per line (no id: the line's 0-based index).
        --candidates: one {"query_id": …, "id": …, "text": …} per line (no id: its 0-based index among its query's candidates).
        Output: one {"query_id", "id", "rank", "score"} per kept candidate, queries in input order; score = P(yes) for a \
        Qwen reranker, sigmoid(logit) for a one-label cross-encoder, the last label's softmax probability for several labels.
        """)

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "A LoRA adapter directory in PEFT format (for a cross-encoder, with the head it saves whole).") var adapter: String?
    @Option(help: "Queries (.jsonl).") var queries: String
    @Option(help: "Candidates (.jsonl), each naming its query by query_id.") var candidates: String
    @Option(name: .spelled("top_k"), help: "Candidates kept per query (default: all).") var topK: Int?
    @Option(help: "Qwen rerankers: the task instruction (default: \"\(QwenReranker.defaultInstruction)\").") var instruction: String?
    @Option(name: .spelled("max_length"), help: "Tokens per scored pair, prompt included (default: the model's: 8192 for Qwen, max_seq_length for a cross-encoder; capped by its positions).")
    var maxLength: Int?
    @Option(name: .spelled("batch_size"), help: "Pairs per forward pass.") var batchSize = 16
    @Option(name: .spelled("yes_token"), help: "Qwen rerankers: the vocabulary token read as the positive answer.") var yesToken = "yes"
    @Option(name: .spelled("no_token"), help: "Qwen rerankers: the vocabulary token read as the negative answer.") var noToken = "no"
    @Option(help: "Output .jsonl file (default: standard output).") var output: String?

    func validate() throws {
        guard batchSize > 0 else { throw ValidationError("--batch_size must be positive") }
        if let topK, topK < 1 { throw ValidationError("--top_k must be at least 1") }
    }

    func run() throws {
        try runReportingErrors {
            let queries = try Self.readRows(self.queries, fields: ["text"])
            let candidates = try Self.readRows(self.candidates, fields: ["query_id", "text"])
            var byQuery = [String: [(id: JSONValue, text: String)]]()
            for c in candidates {
                let key = Self.key(c["query_id"]!)
                byQuery[key, default: []].append((c["id"] ?? .int(byQuery[key]?.count ?? 0), c["text"]!.string!))
            }
            let queryIDs = queries.enumerated().map { $0.element["id"] ?? .int($0.offset) }
            let known = Set(queryIDs.map(Self.key))
            if let orphan = byQuery.keys.sorted().first(where: { !known.contains($0) }) {
                throw FormatError(file: self.candidates, item: "query_id", "\(orphan.dropFirst(2)) names no query in \(self.queries)")
            }
            var options = RerankerOptions()
            options.adapter = adapter.map { URL(fileURLWithPath: $0) }
            options.instruction = instruction
            options.maxLength = maxLength
            options.batchSize = batchSize
            options.answers = (yesToken, noToken)
            let reranker = try loadReranker(modelOptions.directory(), options: options)
            var lines = ""
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            for (query, id) in zip(queries, queryIDs) {
                let pool = byQuery[Self.key(id)] ?? []
                let scores = try reranker.relevance(query: query["text"]!.string!, documents: pool.map(\.text))
                for (rank, hit) in topRanked(scores, topK: topK).enumerated() {
                    let row: JSONValue = .object(["query_id": id, "id": pool[hit.index].id, "rank": .int(rank + 1), "score": .double(Double(hit.score))])
                    lines += String(decoding: try encoder.encode(row), as: UTF8.self) + "\n"
                }
            }
            if let output { try writeAtomically(Data(lines.utf8), to: URL(fileURLWithPath: output)) } else { print(lines, terminator: "") }
        }
    }

    /// The JSON objects of a .jsonl file, each checked for string `fields`; blank lines are skipped.
    static func readRows(_ path: String, fields: [String]) throws -> [JSONValue] {
        var rows = [JSONValue]()
        for (number, line) in TextFile.lines(try TextFile.read(path)) where !line.allSatisfy(\.isWhitespace) {
            let where_ = "\(path):\(number)"
            let value = try JSONValue.parse(Data(line.utf8), file: where_)
            guard value.object != nil else { throw FormatError(file: where_, "line is not a JSON object") }
            for f in fields {
                guard let v = value[f] else { throw FormatError(file: where_, item: f, "missing field") }
                if f == "text", v.string == nil { throw FormatError(file: where_, item: f, "is not a string") }
                if f != "text", v.string == nil && v.int == nil { throw FormatError(file: where_, item: f, "is not a string or an integer") }
            }
            if let id = value["id"], id.string == nil && id.int == nil { throw FormatError(file: where_, item: "id", "is not a string or an integer") }
            rows.append(value)
        }
        return rows
    }

    /// A dictionary key for an id that keeps the string "1" apart from the integer 1.
    static func key(_ id: JSONValue) -> String { id.string.map { "s:\"\($0)\"" } ?? "i:\(id.int ?? 0)" }
}
