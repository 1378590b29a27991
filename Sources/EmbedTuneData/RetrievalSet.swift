import EmbedTuneFormats
import Foundation

/// A retrieval benchmark in the BEIR layout: corpus.jsonl ({_id, title, text}), queries.jsonl
/// ({_id, text}) and a qrels TSV (query-id, corpus-id, score; header optional; score > 0 is
/// relevant). Unknown ids and malformed lines are errors naming file:line.
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
        func lines(_ path: String) throws -> [(Int, Substring)] {
            let text: String
            do { text = try String(contentsOf: URL(fileURLWithPath: path), encoding: .utf8) }
            catch { throw FormatError(file: path, "cannot read: \(error.localizedDescription)") }
            return text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
                .map { ($0.offset + 1, $0.element.hasSuffix("\r") ? $0.element.dropLast() : $0.element) }
                .filter { !$0.1.allSatisfy(\.isWhitespace) }
        }
        func record(_ path: String, _ n: Int, _ line: Substring) throws -> (id: String, text: String) {
            let v = try JSONValue.parse(Data(line.utf8), file: "\(path):\(n)")
            guard let id = v["_id"]?.string ?? v["_id"]?.int.map(String.init) else {
                throw FormatError(file: "\(path):\(n)", item: "_id", "missing")
            }
            guard let text = v["text"]?.string else { throw FormatError(file: "\(path):\(n)", item: "text", "missing or not a string") }
            let title = v["title"]?.string ?? ""
            return (id, title.isEmpty ? text : title + " " + text)
        }
        /// The records of one JSONL file, ids unique, with an index from id to row.
        func records(_ path: String, empty: String) throws -> (ids: [String], texts: [String], index: [String: Int]) {
            var ids = [String](), texts = [String](), index = [String: Int]()
            for (n, line) in try lines(path) {
                let r = try record(path, n, line)
                guard index[r.id] == nil else { throw FormatError(file: "\(path):\(n)", item: "_id", "duplicate id \"\(r.id)\"") }
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
        for (n, line) in try lines(qrelsPath) {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            if n == 1 && f.first == "query-id" { continue }
            guard f.count >= 2 else { throw FormatError(file: "\(qrelsPath):\(n)", "expected query-id<TAB>corpus-id<TAB>score") }
            guard let q = queryIndex[f[0]] else { throw FormatError(file: "\(qrelsPath):\(n)", "unknown query id \"\(f[0])\"") }
            guard let d = corpusIndex[f[1]] else { throw FormatError(file: "\(qrelsPath):\(n)", "unknown corpus id \"\(f[1])\"") }
            let score = f.count >= 3 ? Double(f[2].trimmingCharacters(in: .whitespaces)) : 1
            guard let score else { throw FormatError(file: "\(qrelsPath):\(n)", "score \"\(f[2])\" is not a number") }
            if score > 0 { set.relevant[q].insert(d) }
        }
        return set
    }
}
