import Foundation

/// The layout of an import's input.
public enum ImportFormat: String, CaseIterable, Sendable {
    /// Question–answer rows (JSONL, CSV or TSV); the field names are in `ImportInputs`.
    case pairs
    /// ms-swift embedding rows: {query, response, rejected_response} or {messages,
    /// positive_messages, negative_messages} (a system message is the query's instruction and is
    /// not stored); messages whose last assistant turn is the response are accepted too.
    case msSwift = "ms-swift"
    /// sentence-transformers columns: anchor|query, positive, negative…; otherwise the first
    /// column is the query, the second the positive, the rest negatives.
    case sentenceTransformers = "sentence-transformers"
    /// A BEIR directory (corpus.jsonl, queries.jsonl, qrels/*.tsv) or explicit paths.
    case beir
}

/// Where an import reads from. `input` is the file (or, for BEIR, the directory); BEIR's
/// `corpus`, `queries` and `qrels` override the directory's files (`qrels` may be one .tsv or a
/// directory of them). The field names apply to `.pairs`: nil picks the first present of
/// question/q/query and answer/a/response; `idField` keeps the rows' own query ids.
public struct ImportInputs: Sendable {
    public var input: String?
    public var corpus: String?
    public var queries: String?
    public var qrels: String?
    public var queryField: String?
    public var answerField: String?
    public var idField: String?

    public init(input: String? = nil, corpus: String? = nil, queries: String? = nil, qrels: String? = nil,
                queryField: String? = nil, answerField: String? = nil, idField: String? = nil) {
        self.input = input
        self.corpus = corpus
        self.queries = queries
        self.qrels = qrels
        self.queryField = queryField
        self.answerField = answerField
        self.idField = idField
    }
}

/// What an import did. `duplicatesMerged` counts question and document texts that matched one
/// already in the dataset (stored once); `skipped` counts rows and qrels lines that added no new
/// query–document pair, and BEIR records with empty text (and qrels naming them).
public struct ImportReport: Equatable, Sendable, CustomStringConvertible {
    public var dataset = ""
    public var replaced = false
    public var rowsRead = 0
    public var queries = 0
    public var documents = 0
    public var qrels = 0
    public var negatives = 0
    public var duplicatesMerged = 0
    public var skipped = 0
    /// Queries per split (BEIR qrels file names); "" for unsplit.
    public var splits: [String: Int] = [:]

    public init() {}

    public var description: String {
        var s = "\(replaced ? "replaced" : "imported") \(dataset): \(rowsRead) rows read, \(queries) queries, \(documents) documents, "
            + "\(qrels) qrels, \(negatives) negatives, \(duplicatesMerged) duplicates merged, \(skipped) skipped"
        let named = splits.filter { !$0.key.isEmpty }.sorted { $0.key < $1.key }
        if !named.isEmpty { s += " (splits: " + named.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")" }
        return s
    }
}

/// Length percentiles (nearest rank: the ⌈p·n⌉-th smallest), in tokens or characters.
public struct LengthPercentiles: Codable, Equatable, Sendable {
    public var count = 0
    public var p50 = 0
    public var p90 = 0
    public var p99 = 0
    public var max = 0

    public init() {}

    public init(_ lengths: [Int]) {
        let v = lengths.sorted()
        count = v.count
        guard !v.isEmpty else { return }
        func rank(_ p: Double) -> Int { v[Swift.min(v.count - 1, Swift.max(0, Int((p * Double(v.count)).rounded(.up)) - 1))] }
        p50 = rank(0.5); p90 = rank(0.9); p99 = rank(0.99); max = v[v.count - 1]
    }
}

/// Per-split statistics of one dataset. Splits are the named ones present (train, dev, test…),
/// "unsplit" when some queries have none, and "all".
public struct DatasetStats: Codable, Equatable, Sendable {
    public struct Split: Codable, Equatable, Sendable {
        public var name: String
        public var queries = 0
        /// Queries with at least one relevant (score > 0) document.
        public var queriesWithRelevant = 0
        /// Distinct documents named by this split's qrels.
        public var documents = 0
        public var qrels = 0
        /// Relevant documents per query with any, mean and max.
        public var relevantPerQueryMean = 0.0
        public var relevantPerQueryMax = 0
        public var sourceNegatives = 0
        public var triplets = 0
        public var queryLengths = LengthPercentiles()
        public var documentLengths = LengthPercentiles()

        public init(name: String) { self.name = name }
    }

    public var dataset: String
    public var source: String?
    /// "tokens" when a tokenizer was given, else "characters".
    public var unit: String
    public var corpusSize: Int
    public var corpusLengths: LengthPercentiles
    public var splits: [Split]
}

/// One row of the store's dataset list.
public struct DatasetSummary: Equatable, Sendable {
    public var name: String
    public var source: String?
    public var created: String?
    public var queries: Int
    public var documents: Int
    public var qrels: Int
    public var negatives: Int
    public var triplets: Int
    /// Queries per split; "" for unsplit.
    public var splits: [String: Int]
}

/// A recorded training or evaluation run.
public struct RunRecord: Equatable, Sendable {
    public var id: Int64
    public var dataset: String
    public var kind: String
    public var split: String?
    public var model: String
    public var adapter: String?
    public var created: String
    public var metrics: [String: Double]
}
