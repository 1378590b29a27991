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
            do {
                let r = try RowFields.queryRow(try row.fields(), origin: row.origin)
                try r.checkNegatives()
                out.append(Triplet(query: r.query, positive: r.positives[0], negatives: r.negatives, instruction: r.instruction, origin: r.origin))
            }
            catch let problem as FormatError {
                if skipBadRows { skipped.append(problem) } else { throw problem }
            }
        }
        if out.isEmpty { throw FormatError(file: path, "no usable rows (\(skipped.count) skipped)") }
        return (out, skipped)
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

/// One row of a training or import file: a query, its positives and hard negatives, and the
/// instruction of an ms-swift system message. Texts are trimmed and non-empty.
public struct QueryRow: Equatable, Sendable {
    public var origin: String
    public var query: String
    public var positives: [String]
    public var negatives: [String]
    public var instruction: String?
    /// The row's own query id (`data import --id_field`).
    public var queryID: String?

    public init(origin: String, query: String, positives: [String], negatives: [String], instruction: String? = nil, queryID: String? = nil) {
        self.origin = origin
        self.query = query
        self.positives = positives
        self.negatives = negatives
        self.instruction = instruction
        self.queryID = queryID
    }

    /// A negative equal to a positive would teach the model to push the answer away.
    public func checkNegatives() throws {
        if let k = negatives.firstIndex(where: positives.contains) {
            throw FormatError(file: origin, item: "negative \(k + 1)", "is identical to a positive")
        }
    }
}

/// The field rules every row reader shares (`train --dataset`, `data import`, `mine`): one
/// parser per row layout, the same trimming and the same errors, naming file:line and field.
public enum RowFields {
    /// Drops surrounding whitespace and newlines (Unicode White_Space, as Foundation's
    /// .whitespacesAndNewlines); returns the string itself, uncopied, in the usual case of none —
    /// Foundation's trimmingCharacters bridges through NSString and dominated import time.
    public static func trimmed(_ s: String) -> String {
        let u = s.unicodeScalars
        guard let first = u.first, let last = u.last else { return s }
        if !first.properties.isWhitespace && !last.properties.isWhitespace { return s }
        var start = u.startIndex, end = u.endIndex
        while start < end, u[start].properties.isWhitespace { start = u.index(after: start) }
        while end > start, u[u.index(before: end)].properties.isWhitespace { end = u.index(before: end) }
        return String(u[start..<end])
    }

    /// A required text field: present, a string, not blank; returned trimmed.
    public static func text(_ o: [String: JSONValue], _ key: String, _ origin: String) throws -> String {
        guard let v = o[key], !v.isNull else { throw FormatError(file: origin, item: key, "missing field") }
        guard let s = v.string else { throw FormatError(file: origin, item: key, "is not a string") }
        let t = trimmed(s)
        guard !t.isEmpty else { throw FormatError(file: origin, item: key, "is empty") }
        return t
    }

    /// An optional text: nil when absent, null or blank.
    public static func optionalText(_ o: [String: JSONValue], _ key: String, _ origin: String) throws -> String? {
        guard let v = o[key], !v.isNull else { return nil }
        guard let s = v.string else { throw FormatError(file: origin, item: key, "is not a string") }
        let t = trimmed(s)
        return t.isEmpty ? nil : t
    }

    /// A row as every reader takes it: ms-swift's {query, response, rejected_response} or
    /// {messages, positive_messages, negative_messages} (a system message is the query's
    /// instruction; messages without positive_messages take the last assistant turn as the
    /// positive; rejected_response adds negatives either way), or sentence-transformers'
    /// {anchor, positive, negative | negative_1…n}.
    public static func queryRow(_ o: [String: JSONValue], origin: String) throws -> QueryRow {
        /// The last user/assistant content of a conversation (a list of {role, content}).
        func content(_ conversation: [JSONValue], roles: Set<String>, field: String) throws -> String? {
            var found: String?
            for (i, m) in conversation.enumerated() {
                guard let role = m["role"]?.string else { throw FormatError(file: origin, item: "\(field)[\(i)].role", "missing or not a string") }
                if roles.contains(role) {
                    guard let c = m["content"]?.string else { throw FormatError(file: origin, item: "\(field)[\(i)].content", "missing or not a string") }
                    found = c
                }
            }
            guard let found else { return nil }
            let t = trimmed(found)
            guard !t.isEmpty else { throw FormatError(file: origin, item: "\(field).content", "is empty") }
            return t
        }
        /// A list of conversations, or one conversation (positive_messages is sometimes flat).
        func conversations(_ key: String) throws -> [[JSONValue]] {
            guard let v = o[key], !v.isNull else { return [] }
            guard let list = v.array else { throw FormatError(file: origin, item: key, "is not a list") }
            if list.allSatisfy({ $0.array != nil }) { return list.compactMap(\.array) }
            if list.allSatisfy({ $0.object != nil }) { return [list] }
            throw FormatError(file: origin, item: key, "is not a list of messages or of conversations")
        }
        func rejected() throws -> [String] {
            guard let v = o["rejected_response"], !v.isNull else { return [] }
            if let list = v.array {
                return try list.indices.map { i in
                    guard let s = list[i].string else { throw FormatError(file: origin, item: "rejected_response[\(i)]", "is not a string") }
                    let t = trimmed(s)
                    guard !t.isEmpty else { throw FormatError(file: origin, item: "rejected_response[\(i)]", "is empty") }
                    return t
                }
            }
            return [try text(o, "rejected_response", origin)]
        }
        if let m = o["messages"], !m.isNull {
            guard let messages = m.array else { throw FormatError(file: origin, item: "messages", "is not a list") }
            guard let query = try content(messages, roles: ["user"], field: "messages") else {
                throw FormatError(file: origin, item: "messages", "has no user message")
            }
            var positives = try conversations("positive_messages").enumerated().map { i, c in
                guard let t = try content(c, roles: ["user", "assistant"], field: "positive_messages[\(i)]") else {
                    throw FormatError(file: origin, item: "positive_messages[\(i)]", "has no user or assistant message")
                }
                return t
            }
            if positives.isEmpty {
                guard let answer = try content(messages, roles: ["assistant"], field: "messages") else {
                    throw FormatError(file: origin, item: "positive_messages", "missing field (and messages has no assistant turn)")
                }
                positives = [answer]
            }
            var negatives = try conversations("negative_messages").enumerated().map { i, c in
                guard let t = try content(c, roles: ["user", "assistant"], field: "negative_messages[\(i)]") else {
                    throw FormatError(file: origin, item: "negative_messages[\(i)]", "has no user or assistant message")
                }
                return t
            }
            negatives += try rejected()
            // A blank system message is no instruction.
            let system = messages.last { $0["role"]?.string == "system" }?["content"]?.string.map(trimmed).flatMap { $0.isEmpty ? nil : $0 }
            return QueryRow(origin: origin, query: query, positives: positives, negatives: negatives, instruction: system)
        }
        if o["query"] != nil {
            return QueryRow(origin: origin, query: try text(o, "query", origin), positives: [try text(o, "response", origin)], negatives: try rejected())
        }
        if o["anchor"] != nil {
            var negatives = [String]()
            if let n = try optionalText(o, "negative", origin) { negatives.append(n) }
            var k = 1
            while o["negative_\(k)"] != nil { if let n = try optionalText(o, "negative_\(k)", origin) { negatives.append(n) }; k += 1 }
            return QueryRow(origin: origin, query: try text(o, "anchor", origin), positives: [try text(o, "positive", origin)], negatives: negatives)
        }
        throw FormatError(file: origin, "no known fields (expected query/response, messages, or anchor/positive; have \(o.keys.sorted().joined(separator: ", ")))")
    }

}

/// The field rule of question–answer files, shared by `data import --format pairs` and
/// `mine --dataset`: the field a user names, or else the first of the usual names present in
/// the first row.
public enum PairFields {
    public static let questionNames = ["question", "q", "query", "anchor"]
    public static let answerNames = ["answer", "a", "response", "positive"]
    /// The names as help texts list them.
    public static var questionList: String { questionNames.joined(separator: ", ") }
    public static var answerList: String { answerNames.joined(separator: ", ") }

    /// The field to read `what` ("question" or "answer") from; `flag` is the option that names it.
    public static func pick(_ given: String?, _ candidates: [String], what: String, flag: String,
                            first: [String: JSONValue], columns: [String], origin: String) throws -> String {
        if let given { return given }
        guard let found = candidates.first(where: { first[$0] != nil }) else {
            let have = columns.isEmpty ? first.keys.sorted() : columns
            throw FormatError(file: origin, "cannot tell the \(what) field (have \(have.joined(separator: ", ")); expected one of \(candidates.joined(separator: ", "))); use \(flag)")
        }
        return found
    }
}
