import Foundation

/// The Markdown EmbedTune itself writes (model cards, fusion.md, eval's metrics.md) as HTML:
/// pipe tables, bullet lists, fenced code, headings, paragraphs, `code` and **bold**. Anything
/// else passes through as escaped text, so a foreign file can never inject markup.
enum MarkdownHTML {
    static func render(_ markdown: String) -> String {
        var html = "", paragraph = [String](), list = [String](), table = [String](), code: [String]? = nil
        func flush() {
            if !paragraph.isEmpty { html += "<p>" + paragraph.map(inline).joined(separator: " ") + "</p>\n"; paragraph = [] }
            if !list.isEmpty { html += "<ul>\n" + list.map { "<li>\(inline($0))</li>\n" }.joined() + "</ul>\n"; list = [] }
            if !table.isEmpty { html += tableHTML(table); table = [] }
        }
        for raw in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            if var block = code {
                if line.hasPrefix("```") {
                    html += "<pre><code>" + Markup.escape(block.joined(separator: "\n")) + "</code></pre>\n"
                    code = nil
                } else { block.append(line); code = block }
                continue
            }
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("```") { flush(); code = []; continue }
            if trimmed.hasPrefix("|") { if table.isEmpty { flush() }; table.append(trimmed); continue }
            if trimmed.hasPrefix("- ") { if list.isEmpty { flush() }; list.append(String(trimmed.dropFirst(2))); continue }
            if trimmed.isEmpty { flush(); continue }
            if let level = headingLevel(trimmed) {
                flush()
                let tag = "h\(min(level + 1, 6))"  // the page's own sections are h2
                html += "<\(tag)>\(inline(String(trimmed.drop { $0 == "#" }).trimmingCharacters(in: .whitespaces)))</\(tag)>\n"
                continue
            }
            if !table.isEmpty || !list.isEmpty { flush() }
            paragraph.append(trimmed)
        }
        if let block = code { html += "<pre><code>" + Markup.escape(block.joined(separator: "\n")) + "</code></pre>\n" }
        flush()
        return html
    }

    static func headingLevel(_ line: String) -> Int? {
        let hashes = line.prefix { $0 == "#" }.count
        return (1...6).contains(hashes) && line.dropFirst(hashes).hasPrefix(" ") ? hashes : nil
    }

    /// Rows of `| a | b |`; the `|---|---:|` rule row sets each column's alignment.
    static func tableHTML(_ lines: [String]) -> String {
        let rows = lines.map(cells)
        guard let header = rows.first else { return "" }
        let ruleIndex = rows.count > 1 && rows[1].allSatisfy { $0.allSatisfy { "-:".contains($0) } && !$0.isEmpty } ? 1 : nil
        let alignments = ruleIndex.map { rows[$0].map { $0.hasSuffix(":") ? " class=\"num\"" : "" } } ?? []
        func align(_ i: Int) -> String { i < alignments.count ? alignments[i] : "" }
        var html = "<table>\n<thead><tr>" + header.enumerated().map { "<th\(align($0))>\(inline($1))</th>" }.joined() + "</tr></thead>\n<tbody>\n"
        for row in rows.dropFirst(ruleIndex == nil ? 1 : 2) {
            html += "<tr>" + row.enumerated().map { "<td\(align($0))>\(inline($1))</td>" }.joined() + "</tr>\n"
        }
        return html + "</tbody>\n</table>\n"
    }

    /// Cells of a pipe-table row; `\|` is a literal pipe inside a cell.
    static func cells(_ line: String) -> [String] {
        var body = line.trimmingCharacters(in: .whitespaces)
        if body.hasPrefix("|") { body.removeFirst() }
        if body.hasSuffix("|") && !body.hasSuffix("\\|") { body.removeLast() }
        let placeholder = "\u{0}"
        return body.replacingOccurrences(of: "\\|", with: placeholder).split(separator: "|", omittingEmptySubsequences: false)
            .map { $0.replacingOccurrences(of: placeholder, with: "|").trimmingCharacters(in: .whitespaces) }
    }

    /// `code` and **bold**, after escaping.
    static func inline(_ text: String) -> String {
        var html = "", inCode = false, inBold = false
        var rest = Substring(text)
        while let c = rest.first {
            if c == "`" { html += inCode ? "</code>" : "<code>"; inCode.toggle(); rest = rest.dropFirst(); continue }
            if !inCode && rest.hasPrefix("**") { html += inBold ? "</strong>" : "<strong>"; inBold.toggle(); rest = rest.dropFirst(2); continue }
            html += Markup.escape(String(c))
            rest = rest.dropFirst()
        }
        if inCode { html += "</code>" }
        if inBold { html += "</strong>" }
        return html
    }
}
