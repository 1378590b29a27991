import Foundation

/// One self-contained HTML document: inline CSS, inline SVG, no scripts, fonts or links to
/// fetch, so the file can be mailed, archived or opened offline.
public struct HTMLPage {
    public struct Section {
        public var heading: String
        /// Already-rendered HTML (the builders below escape what they take).
        public var body: String
        public init(heading: String, body: String) { self.heading = heading; self.body = body }
    }

    public var title: String
    /// Lines under the title (escaped).
    public var subtitle: [String] = []
    public var sections: [Section] = []

    public init(title: String) { self.title = title }

    public func render() -> String {
        var html = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        html += "<title>\(Markup.escape(title))</title>\n<style>\n\(Self.css)</style>\n</head>\n<body>\n"
        html += "<header><h1>\(Markup.escape(title))</h1>\n"
        html += subtitle.map { "<p class=\"sub\">\(Markup.escape($0))</p>\n" }.joined() + "</header>\n"
        for section in sections {
            html += "<section>\n<h2>\(Markup.escape(section.heading))</h2>\n\(section.body)</section>\n"
        }
        return html + "</body>\n</html>\n"
    }

    /// SVG charts side by side, wrapping onto further rows.
    public static func chartGrid(_ svgs: [String]) -> String {
        "<div class=\"charts\">\n" + svgs.map { "<figure>\($0)</figure>\n" }.joined() + "</div>\n"
    }

    /// A two-column table of label–value pairs.
    public static func keyValueTable(_ rows: [(String, String)]) -> String {
        "<table class=\"kv\">\n" + rows.map { "<tr><th>\(Markup.escape($0.0))</th><td>\(Markup.escape($0.1))</td></tr>\n" }.joined()
            + "</table>\n"
    }

    /// Markdown EmbedTune wrote (a model card section, fusion.md, metrics.md) as HTML.
    public static func markdown(_ text: String) -> String { MarkdownHTML.render(text) }

    static let css = """
    body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #222; margin: 24px auto;
           max-width: 1160px; padding: 0 16px; line-height: 1.45; }
    header { border-bottom: 2px solid #4e79a7; margin-bottom: 8px; }
    h1 { font-size: 26px; margin: 0 0 6px; }
    h2 { font-size: 19px; margin: 28px 0 10px; color: #2b4a6f; }
    h3 { font-size: 15px; margin: 16px 0 6px; }
    p.sub { margin: 2px 0; color: #555; font-size: 14px; }
    .charts { display: flex; flex-wrap: wrap; gap: 16px; }
    figure { margin: 0; border: 1px solid #ddd; border-radius: 4px; background: white; }
    table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px; }
    th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }
    thead th { background: #f0f4f8; }
    td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
    table.kv th { background: #f7f7f7; font-weight: 600; white-space: nowrap; }
    table.kv td { font-family: "DejaVu Sans Mono", Menlo, monospace; word-break: break-all; }
    pre { background: #f6f8fa; border: 1px solid #e1e4e8; padding: 8px 10px; overflow-x: auto; font-size: 12px;
          white-space: pre-wrap; word-break: break-all; }
    code { font-family: "DejaVu Sans Mono", Menlo, monospace; font-size: 12px; }
    .muted { color: #777; }

    """
}
