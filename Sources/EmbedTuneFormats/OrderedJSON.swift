import Foundation

// OrderedJSON: the JSON writer behind a converted E5S1 model's files (E5S1Convert.swift,
// E5S1Tokenizer.swift).

/// JSON with key order kept and numbers written exactly: a Double prints as its shortest
/// round-trip decimal (so an fp32 score survives as the same fp64 value `tokenizers` reads).
/// Pretty-printed with two-space indents; arrays of scalars stay on one line.
enum OrderedJSON {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([OrderedJSON])
    case object([(String, OrderedJSON)])

    func serialized() -> [UInt8] {
        var out = [UInt8]()
        write(into: &out, level: 0)
        out.append(0x0A)
        return out
    }

    private var isScalar: Bool {
        switch self {
        case .array, .object: return false
        default: return true
        }
    }

    private func write(into out: inout [UInt8], level: Int) {
        switch self {
        case .null: out += Array("null".utf8)
        case .bool(let b): out += Array((b ? "true" : "false").utf8)
        case .int(let i): out += Array(String(i).utf8)
        case .double(let d):
            precondition(d.isFinite, "JSON cannot hold \(d)")
            out += Array(d.description.utf8)
        case .string(let s): OrderedJSON.writeString(s, into: &out)
        case .array(let a):
            if a.isEmpty { out += Array("[]".utf8); return }
            if a.allSatisfy(\.isScalar) {
                out.append(UInt8(ascii: "["))
                for (i, v) in a.enumerated() {
                    if i > 0 { out += [UInt8(ascii: ","), UInt8(ascii: " ")] }
                    v.write(into: &out, level: level + 1)
                }
                out.append(UInt8(ascii: "]"))
                return
            }
            out.append(UInt8(ascii: "["))
            for (i, v) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                OrderedJSON.newline(&out, level + 1)
                v.write(into: &out, level: level + 1)
            }
            OrderedJSON.newline(&out, level)
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            if o.isEmpty { out += Array("{}".utf8); return }
            out.append(UInt8(ascii: "{"))
            for (i, (k, v)) in o.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                OrderedJSON.newline(&out, level + 1)
                OrderedJSON.writeString(k, into: &out)
                out += [UInt8(ascii: ":"), UInt8(ascii: " ")]
                v.write(into: &out, level: level + 1)
            }
            OrderedJSON.newline(&out, level)
            out.append(UInt8(ascii: "}"))
        }
    }

    private static func newline(_ out: inout [UInt8], _ level: Int) {
        out.append(0x0A)
        out += [UInt8](repeating: 0x20, count: 2 * level)
    }

    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += Array("\\\"".utf8)
            case "\\": out += Array("\\\\".utf8)
            case "\n": out += Array("\\n".utf8)
            case "\r": out += Array("\\r".utf8)
            case "\t": out += Array("\\t".utf8)
            case "\u{08}": out += Array("\\b".utf8)
            case "\u{0C}": out += Array("\\f".utf8)
            default:
                if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029 {
                    out += Array(String(format: "\\u%04x", scalar.value).utf8)
                } else {
                    out += Array(String(scalar).utf8)
                }
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
