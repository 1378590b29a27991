import EmbedTuneFormats
import Foundation

/// One training example: a query, its positive and any number of hard negatives; a system
/// message (ms-swift messages format) becomes the query's instruction.
public struct Triplet: Equatable, Sendable {
    public var query: String
    public var positive: String
    public var negatives: [String]
    public var instruction: String?
    /// Where it came from, for error messages ("file.jsonl:12").
    public var origin: String

    public init(query: String, positive: String, negatives: [String], instruction: String? = nil, origin: String = "") {
        self.query = query
        self.positive = positive
        self.negatives = negatives
        self.instruction = instruction
        self.origin = origin
    }
}

/// Reads training triples from JSONL (ms-swift {query, response, rejected_response}, ms-swift
/// messages / positive_messages / negative_messages, or sentence-transformers columns
/// anchor / positive / negative | negative_1…n), or CSV / TSV with those column names.
/// Bad rows are errors naming file:line, or — with `skipBadRows` — counted and skipped.
public enum TripletReader {
    public static func read(_ path: String, skipBadRows: Bool = false) throws -> (triplets: [Triplet], skipped: [FormatError]) {
        let rows = try TableRows.read(try TextFile.read(path), path: path, format: URL(fileURLWithPath: path).pathExtension.lowercased())
        var out = [Triplet](), skipped = [FormatError]()
        for row in rows {
            do { out.append(try triplet(try row.fields(), origin: row.origin)) }
            catch let problem as FormatError {
                if skipBadRows { skipped.append(problem) } else { throw problem }
            }
        }
        if out.isEmpty { throw FormatError(file: path, "no usable rows (\(skipped.count) skipped)") }
        return (out, skipped)
    }

    static func triplet(_ o: [String: JSONValue], origin: String) throws -> Triplet {
        func text(_ key: String, _ v: JSONValue?) throws -> String {
            guard let v else { throw FormatError(file: origin, "missing field \"\(key)\"") }
            guard let s = v.string else { throw FormatError(file: origin, "field \"\(key)\" is not a string") }
            guard !s.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw FormatError(file: origin, "field \"\(key)\" is empty")
            }
            return s
        }
        func messagesText(_ key: String) throws -> (user: String, system: String?) {
            guard var list = o[key]?.array else { throw FormatError(file: origin, "missing field \"\(key)\"") }
            // positive_messages is a list of conversations; the first one is the positive.
            if let first = list.first?.array { list = first }
            var user: String?, system: String?
            for m in list {
                let role = m["role"]?.string, content = m["content"]?.string
                if role == "system" { system = content } else if role == "user" || role == "assistant" { user = content ?? user }
            }
            return (try text("\(key).content", user.map(JSONValue.string)), system)
        }
        var t: Triplet
        if o["messages"] != nil {
            let q = try messagesText("messages")
            let p = try messagesText("positive_messages")
            var negatives = [String]()
            for (i, n) in (o["negative_messages"]?.array ?? []).enumerated() {
                guard let group = n.array else { throw FormatError(file: origin, "negative_messages[\(i)] is not a list of messages") }
                let content = group.last?["content"]?.string
                negatives.append(try text("negative_messages[\(i)].content", content.map(JSONValue.string)))
            }
            t = Triplet(query: q.user, positive: p.user, negatives: negatives, instruction: q.system, origin: origin)
        } else if o["query"] != nil {
            var negatives = [String]()
            if let list = o["rejected_response"]?.array {
                for (i, n) in list.enumerated() { negatives.append(try text("rejected_response[\(i)]", n)) }
            } else if let one = o["rejected_response"], !one.isNull {
                negatives.append(try text("rejected_response", one))
            }
            t = Triplet(query: try text("query", o["query"]), positive: try text("response", o["response"]), negatives: negatives,
                        origin: origin)
        } else if o["anchor"] != nil {
            var negatives = [String]()
            if let n = o["negative"] { negatives.append(try text("negative", n)) }
            var k = 1
            while let n = o["negative_\(k)"] { negatives.append(try text("negative_\(k)", n)); k += 1 }
            t = Triplet(query: try text("anchor", o["anchor"]), positive: try text("positive", o["positive"]), negatives: negatives,
                        origin: origin)
        } else {
            throw FormatError(file: origin, "no known fields (expected query/response, messages, or anchor/positive)")
        }
        if let same = t.negatives.firstIndex(of: t.positive) {
            throw FormatError(file: origin, "negative \(same + 1) is identical to the positive")
        }
        return t
    }
}

/// The records of a JSONL, CSV or TSV file as field dictionaries, each parsed only when asked
/// for, so a caller can skip a malformed row and go on. Origins are "file:line".
public enum TableRows {
    public typealias Row = (origin: String, fields: () throws -> [String: JSONValue])

    /// `format` is the file extension: jsonl / ndjson, csv or tsv.
    public static func read(_ text: String, path: String, format: String) throws -> [Row] {
        var rows = [Row]()
        switch format {
        case "jsonl", "ndjson":
            for (number, line) in TextFile.lines(text) where !line.allSatisfy(\.isWhitespace) {
                let origin = "\(path):\(number)"
                rows.append((origin, {
                    let v: JSONValue
                    do { v = try JSONValue.parse(Data(line.utf8), file: origin) }
                    catch { throw FormatError(file: origin, "malformed JSON") }
                    guard let o = v.object else { throw FormatError(file: origin, "line is not a JSON object") }
                    return o
                }))
            }
        case "csv", "tsv":
            let table = try DelimitedText.parse(text, separator: format == "tsv" ? "\t" : ",", file: path)
            guard let header = table.first else { throw FormatError(file: path, "empty file") }
            for (i, record) in table.dropFirst().enumerated() where !(record.count == 1 && record[0].isEmpty) {
                let origin = "\(path):\(i + 2)"
                rows.append((origin, {
                    guard record.count == header.count else {
                        throw FormatError(file: origin, "\(record.count) fields, header has \(header.count)")
                    }
                    return Dictionary(zip(header, record.map { JSONValue.string($0) }), uniquingKeysWith: { a, _ in a })
                }))
            }
        default:
            throw FormatError(file: path, "unknown data format \".\(format)\" (use .jsonl, .csv or .tsv)")
        }
        return rows
    }
}

/// RFC 4180-style CSV/TSV: quoted fields with doubled quotes, embedded separators and newlines.
public enum DelimitedText {
    public static func parse(_ text: String, separator: Character, file: String) throws -> [[String]] {
        var rows = [[String]](), row = [String](), field = "", inQuotes = false, atFieldStart = true, line = 1
        var it = text.makeIterator()
        while let ch = it.next() {
            if inQuotes {
                if ch == "\"" {
                    // A doubled quote is a literal quote; otherwise the quoted part ends.
                    var peek = it
                    if peek.next() == "\"" { field.append("\""); _ = it.next() } else { inQuotes = false }
                } else {
                    if ch == "\n" { line += 1 }
                    field.append(ch)
                }
                continue
            }
            switch ch {
            case "\"" where atFieldStart: inQuotes = true; atFieldStart = false
            case separator: row.append(field); field = ""; atFieldStart = true
            case "\n", "\r\n":
                row.append(field); rows.append(row); row = []; field = ""; atFieldStart = true; line += 1
            case "\r": continue
            default: field.append(ch); atFieldStart = false
            }
        }
        if inQuotes { throw FormatError(file: "\(file):\(line)", "unterminated quoted field") }
        if !field.isEmpty || !row.isEmpty { row.append(field); rows.append(row) }
        return rows
    }
}
