import Foundation

/// The TOML subset training configs use: `key = value` lines with strings ("basic" with escapes,
/// 'literal'), integers, floats, booleans and single-line arrays of those, `[table]` headers
/// (one level), and # comments. Anything else is an error naming file:line.
public enum TOML {
    public static func parse(_ text: String, file: String) throws -> JSONValue {
        var root = [String: JSONValue](), table: String?
        for (n, line) in TextFile.lines(TextFile.withoutBOM(text)) {
            let origin = "\(file):\(n)"
            var p = TOMLScanner(Array(line.unicodeScalars), origin: origin)
            p.skipSpace()
            if p.atEnd || p.peek == "#" { continue }
            if p.peek == "[" {
                p.i += 1
                let name = try p.key()
                p.skipSpace()
                guard p.peek == "]" else { throw FormatError(file: origin, "expected ']' after the table name") }
                p.i += 1
                try p.expectLineEnd()
                guard root[name] == nil else { throw FormatError(file: origin, "table [\(name)] defined twice") }
                root[name] = .object([:])
                table = name
                continue
            }
            let key = try p.key()
            p.skipSpace()
            guard p.peek == "=" else { throw FormatError(file: origin, "expected '=' after \"\(key)\"") }
            p.i += 1
            let value = try p.value()
            try p.expectLineEnd()
            if let table {
                var t = root[table]?.object ?? [:]
                guard t[key] == nil else { throw FormatError(file: origin, "\"\(key)\" set twice in [\(table)]") }
                t[key] = value
                root[table] = .object(t)
            } else {
                guard root[key] == nil else { throw FormatError(file: origin, "\"\(key)\" set twice") }
                root[key] = value
            }
        }
        return .object(root)
    }
}

struct TOMLScanner {
    let s: [Unicode.Scalar]
    let origin: String
    var i = 0
    /// Arrays open around the value being read: each level is a recursive call, so the depth is
    /// capped (as JSON's is) before a hostile file runs the stack out.
    var arrayDepth = 0
    init(_ s: [Unicode.Scalar], origin: String) { self.s = s; self.origin = origin }

    var atEnd: Bool { i >= s.count }
    var peek: Unicode.Scalar? { i < s.count ? s[i] : nil }
    mutating func skipSpace() { while let c = peek, c == " " || c == "\t" { i += 1 } }
    func fail(_ m: String) -> FormatError { FormatError(file: origin, m) }

    mutating func expectLineEnd() throws {
        skipSpace()
        if !atEnd && peek != "#" { throw fail("unexpected text after the value") }
    }

    mutating func key() throws -> String {
        skipSpace()
        if peek == "\"" { return try basicString() }
        var k = ""
        while let c = peek, c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_" || c == "-" {
            k.unicodeScalars.append(c); i += 1
        }
        if k.isEmpty { throw fail("expected a key") }
        return k
    }

    mutating func value() throws -> JSONValue {
        skipSpace()
        guard let c = peek else { throw fail("missing value") }
        switch c {
        case "\"": return .string(try basicString())
        case "'":
            i += 1
            var out = ""
            while let d = peek, d != "'" { out.unicodeScalars.append(d); i += 1 }
            guard peek == "'" else { throw fail("unterminated literal string") }
            i += 1
            return .string(out)
        case "[":
            i += 1
            arrayDepth += 1
            defer { arrayDepth -= 1 }
            if arrayDepth > 512 { throw fail("arrays nested deeper than 512") }
            var items = [JSONValue]()
            while true {
                skipSpace()
                if peek == "]" { i += 1; return .array(items) }
                items.append(try value())
                skipSpace()
                if peek == "," { i += 1; continue }
                if peek == "]" { i += 1; return .array(items) }
                throw fail("expected ',' or ']' in an array (arrays must fit on one line)")
            }
        default:
            var word = ""
            while let d = peek, d != " ", d != "\t", d != ",", d != "]", d != "#" { word.unicodeScalars.append(d); i += 1 }
            if word == "true" { return .bool(true) }
            if word == "false" { return .bool(false) }
            let digits = word.replacingOccurrences(of: "_", with: "")
            if let v = Int(digits) { return .int(v) }
            if let v = Double(digits) { return .double(v) }
            throw fail("cannot read value \"\(word)\" (strings need quotes)")
        }
    }

    mutating func basicString() throws -> String {
        i += 1
        var out = ""
        while let c = peek, c != "\"" {
            i += 1
            if c != "\\" { out.unicodeScalars.append(c); continue }
            guard let e = peek else { break }
            i += 1
            switch e {
            case "n": out += "\n"
            case "t": out += "\t"
            case "r": out += "\r"
            case "\"": out += "\""
            case "\\": out += "\\"
            case "u", "U":
                let n = e == "u" ? 4 : 8
                guard i + n <= s.count, let v = UInt32(String(String.UnicodeScalarView(s[i..<(i + n)])), radix: 16),
                      let u = Unicode.Scalar(v) else { throw fail("invalid \\\(e) escape") }
                out.unicodeScalars.append(u)
                i += n
            default: throw fail("invalid escape \\\(e)")
            }
        }
        guard peek == "\"" else { throw fail("unterminated string") }
        i += 1
        return out
    }
}

extension JSONValue {
    /// The value in TOML syntax (a table as an inline table).
    public var tomlText: String {
        switch self {
        case .null: return "\"\""
        case .bool(let b): return "\(b)"
        case .int(let i): return "\(i)"
        case .double(let d): return d == d.rounded() && abs(d) < 1e15 ? String(format: "%.1f", d) : "\(d)"
        case .string(let s):
            let escapes: [Unicode.Scalar: String] = ["\"": "\\\"", "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"]
            return "\"" + s.unicodeScalars.map { u in
                escapes[u] ?? (u.value < 0x20 || u.value == 0x7f ? String(format: "\\u%04X", u.value) : String(u))
            }.joined() + "\""
        case .array(let items): return "[" + items.map(\.tomlText).joined(separator: ", ") + "]"
        case .object(let o): return "{" + o.sorted { $0.key < $1.key }.map { "\($0.key) = \($0.value.tomlText)" }.joined(separator: ", ") + "}"
        }
    }
}

extension TOML {
    /// A JSON object as a TOML document `parse` reads back: scalars and arrays first, then one
    /// `[table]` per nested object, keys sorted; null values are left out.
    public static func document(_ object: JSONValue) -> String {
        let entries = (object.object ?? [:]).sorted { $0.key < $1.key }
        var s = "", tables = ""
        for (key, value) in entries {
            if let inner = value.object {
                tables += "\n[\(key)]\n" + inner.sorted { $0.key < $1.key }.map { "\($0.key) = \($0.value.tomlText)\n" }.joined()
            } else if !value.isNull {
                s += "\(key) = \(value.tomlText)\n"
            }
        }
        return s + tables
    }
}
