import EmbedTuneFormats
import Foundation

/// A retrieval benchmark in the BEIR layout: corpus.jsonl ({_id, title, text}), queries.jsonl
/// ({_id, text}) and a qrels TSV (query-id, corpus-id, score; header optional; score > 0 is
/// relevant), read by `BEIRFiles`. Unknown ids and malformed lines are errors naming file:line.
public struct RetrievalSet {
    public var queryIDs: [String] = []
    public var queries: [String] = []
    public var corpusIDs: [String] = []
    public var corpus: [String] = []
    /// Per query, indices into `corpus`.
    public var relevant: [Set<Int>] = []

    public init() {}

    public static func loadBEIR(corpus corpusPath: String, queries queriesPath: String, qrels qrelsPath: String) throws -> RetrievalSet {
        var set = RetrievalSet()
        /// The records of one JSONL file, ids unique, with an index from id to row.
        func records(_ path: String, empty: String) throws -> (ids: [String], texts: [String], index: [String: Int]) {
            var ids = [String](), texts = [String](), index = [String: Int]()
            for r in try BEIRFiles.records(path) {
                guard index[r.id] == nil else { throw FormatError(file: r.origin, item: "_id", "duplicate id \"\(r.id)\"") }
                index[r.id] = ids.count
                ids.append(r.id); texts.append(r.text)
            }
            if ids.isEmpty { throw FormatError(file: path, empty) }
            return (ids, texts, index)
        }
        let (corpusIDs, corpus, corpusIndex) = try records(corpusPath, empty: "the corpus is empty")
        let (queryIDs, queries, queryIndex) = try records(queriesPath, empty: "no queries")
        set.corpusIDs = corpusIDs; set.corpus = corpus; set.queryIDs = queryIDs; set.queries = queries
        set.relevant = Array(repeating: [], count: set.queries.count)
        for j in try BEIRFiles.qrels(qrelsPath) {
            guard let q = queryIndex[j.queryID] else { throw FormatError(file: j.origin, "unknown query id \"\(j.queryID)\"") }
            guard let d = corpusIndex[j.documentID] else { throw FormatError(file: j.origin, "unknown corpus id \"\(j.documentID)\"") }
            if j.score > 0 { set.relevant[q].insert(d) }
        }
        return set
    }
}

extension RetrievalSet {
    /// A BEIR directory (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) judged by the first of
    /// `splits` whose qrels file exists.
    public static func loadBEIRDirectory(_ path: String, splits: [String]) throws -> RetrievalSet {
        let dir = URL(fileURLWithPath: path)
        guard let qrels = splits.map({ dir.appendingPathComponent("qrels/\($0).tsv") })
            .first(where: { FileManager.default.fileExists(atPath: $0.path) }) else {
            throw FormatError(file: path, "no " + splits.map { "qrels/\($0).tsv" }.joined(separator: " or ") + " (expected a BEIR directory)")
        }
        return try loadBEIR(corpus: dir.appendingPathComponent("corpus.jsonl").path,
                            queries: dir.appendingPathComponent("queries.jsonl").path, qrels: qrels.path)
    }

    /// The first `queries` judged queries; with `documents` > 0, at most that many documents:
    /// every judged one, then the others in corpus order (indices renumbered).
    public func limited(queries maxQueries: Int, documents maxDocuments: Int) -> RetrievalSet {
        var set = self
        let judged = set.relevant.indices.filter { !set.relevant[$0].isEmpty }.prefix(maxQueries)
        set.queryIDs = judged.map { set.queryIDs[$0] }
        set.queries = judged.map { set.queries[$0] }
        set.relevant = judged.map { set.relevant[$0] }
        if maxDocuments > 0 && set.corpus.count > maxDocuments {
            let judgedDocs = Set(set.relevant.flatMap { $0 })
            var keep = judgedDocs.sorted()
            for d in set.corpus.indices where keep.count < maxDocuments && !judgedDocs.contains(d) { keep.append(d) }
            keep.sort()
            let newIndex = Dictionary(uniqueKeysWithValues: keep.enumerated().map { ($1, $0) })
            set.corpus = keep.map { set.corpus[$0] }
            set.corpusIDs = keep.map { set.corpusIDs[$0] }
            set.relevant = set.relevant.map { Set($0.compactMap { newIndex[$0] }) }
        }
        return set
    }
}
