import EmbedTuneFormats
import Foundation

/// The line and column rules of BEIR files, shared by `RetrievalSet.loadBEIR` and
/// `data import --format beir`: corpus and queries are JSONL records {_id, title?, text}; a qrels
/// file is TSV (query-id, corpus-id, score) with an optional header line. Every problem names
/// file:line and the field.
public enum BEIRFiles {
    public struct Record {
        public var origin: String
        public var id: String
        /// The title (trimmed) and the text joined by a space, as BEIR's loaders join them.
        public var text: String
    }

    public struct Judgement {
        public var origin: String
        public var queryID: String
        public var documentID: String
        public var score: Double
    }

    public static func records(_ path: String) throws -> [Record] {
        try TextFile.lines(try TextFile.read(path)).filter { !$0.text.allSatisfy(\.isWhitespace) }.map { n, line in
            let origin = "\(path):\(n)"
            let v: JSONValue
            do { v = try JSONValue.parse(Data(line.utf8), file: origin) }
            catch let e as FormatError { throw FormatError(file: origin, "malformed JSON (\(e.problem))") }
            guard let o = v.object else { throw FormatError(file: origin, "line is not a JSON object") }
            guard let id = o["_id"]?.string ?? o["_id"]?.int.map(String.init), !id.isEmpty else {
                throw FormatError(file: origin, item: "_id", "missing, or not a string or integer")
            }
            guard let text = o["text"]?.string else { throw FormatError(file: origin, item: "text", "missing or not a string") }
            let title = RowFields.trimmed(o["title"]?.string ?? "")
            return Record(origin: origin, id: id, text: title.isEmpty ? text : title + " " + text)
        }
    }

    /// Column names a qrels header line may start with.
    static let headerNames: Set<String> = ["query-id", "query_id", "qid", "query"]

    public static func qrels(_ path: String) throws -> [Judgement] {
        var out = [Judgement]()
        for (k, (n, line)) in TextFile.lines(try TextFile.read(path)).filter({ !$0.text.allSatisfy(\.isWhitespace) }).enumerated() {
            let origin = "\(path):\(n)"
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map { RowFields.trimmed(String($0)) }
            if k == 0, headerNames.contains(f[0].lowercased()) { continue }
            // Two columns judge the pair relevant (score 1), as BEIR's loaders read them.
            guard f.count == 3 || f.count == 2 else {
                throw FormatError(file: origin, "expected 3 tab-separated columns (query-id, corpus-id, score), found \(f.count)")
            }
            let score = f.count == 2 ? 1 : Double(f[2])
            guard let score, score.isFinite else { throw FormatError(file: origin, item: "score", "\"\(f[2])\" is not a number") }
            out.append(Judgement(origin: origin, queryID: f[0], documentID: f[1], score: score))
        }
        return out
    }
}
