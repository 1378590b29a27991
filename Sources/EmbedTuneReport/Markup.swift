import Foundation

/// Text and numbers as SVG and HTML need them.
enum Markup {
    /// Escapes the five characters that are markup in XML text and attribute values.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    /// An axis label: three significant digits, no trailing noise ("0.05", "1e-04", "120").
    static func tick(_ value: Double) -> String {
        if value == 0 { return "0" }
        let magnitude = abs(value)
        if magnitude >= 1e-3 && magnitude < 1e5 {
            var s = String(format: "%.4f", value)
            while s.hasSuffix("0") { s.removeLast() }
            if s.hasSuffix(".") { s.removeLast() }
            return s
        }
        return String(format: "%.0e", value)
    }

    /// A coordinate with two decimals: enough for a screen, short in the file.
    static func coordinate(_ value: Double) -> String { String(format: "%.2f", value) }
}
