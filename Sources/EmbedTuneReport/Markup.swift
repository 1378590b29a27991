import Foundation

/// Text and numbers as SVG and HTML need them.
enum Markup {
    /// Escapes the five characters that are markup in XML text and attribute values.
    static func escape(_ text: String) -> String {
        let entities: [Character: String] = ["&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"]
        var out = ""
        out.reserveCapacity(text.count)
        for c in text { out += entities[c] ?? String(c) }
        return out
    }

    /// An axis label: three significant digits, a short exponent ("0.05", "120", "1.5e-5").
    static func tick(_ value: Double) -> String {
        let text = String(format: "%.3g", value)
        guard let e = text.firstIndex(of: "e"), let exponent = Int(text[text.index(after: e)...]) else { return text }
        return "\(text[..<e])e\(exponent)"
    }

    /// A coordinate with two decimals: enough for a screen, short in the file.
    static func coordinate(_ value: Double) -> String { String(format: "%.2f", value) }
}
