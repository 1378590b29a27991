import Foundation

/// Grouped bars in [0, 1]: categories (metrics) on the x axis, one colour per series (model), the
/// value printed above each bar. `embedtune eval --chart` and the run report draw it.
public struct BarChart {
    public struct Series {
        public var name: String
        /// One value per category; missing or out-of-range values are drawn clamped to [0, 1].
        public var values: [Double]
        public init(name: String, values: [Double]) { self.name = name; self.values = values }
    }

    public var title: String
    public var categories: [String]
    public var series: [Series]

    public init(title: String = "Domain Search Performance Comparison", categories: [String], series: [Series]) {
        self.title = title; self.categories = categories; self.series = series
    }

    static let colours = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948"]

    public func svg() -> String {
        let width = 720.0, height = 420.0, left = 60.0, bottom = 60.0, top = 50.0
        let plotW = width - left - 20, plotH = height - top - bottom
        let colours = Self.colours
        let group = plotW / Double(max(categories.count, 1)), bar = group * 0.8 / Double(max(series.count, 1))
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        svg += "<text x=\"\(width / 2)\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">\(Markup.escape(title))</text>\n"
        for tick in stride(from: 0.0, through: 1.0, by: 0.2) {
            let y = top + plotH * (1 - tick)
            svg += "<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(left + plotW)\" y2=\"\(y)\" stroke=\"#ddd\"/>"
            svg += "<text x=\"\(left - 8)\" y=\"\(y + 4)\" text-anchor=\"end\">\(String(format: "%.1f", tick))</text>\n"
        }
        for (ci, category) in categories.enumerated() {
            let x0 = left + Double(ci) * group + group * 0.1
            for (si, s) in series.enumerated() {
                let v = max(0, min(1, ci < s.values.count && s.values[ci].isFinite ? s.values[ci] : 0))
                let x = x0 + Double(si) * bar, h = plotH * v
                svg += "<rect x=\"\(x)\" y=\"\(top + plotH - h)\" width=\"\(bar * 0.95)\" height=\"\(h)\" fill=\"\(colours[si % colours.count])\"/>"
                svg += "<text x=\"\(x + bar * 0.475)\" y=\"\(top + plotH - h - 4)\" text-anchor=\"middle\" font-size=\"10\">\(String(format: "%.3f", v))</text>\n"
            }
            svg += "<text x=\"\(left + Double(ci) * group + group / 2)\" y=\"\(top + plotH + 20)\" text-anchor=\"middle\">\(Markup.escape(category))</text>\n"
        }
        for (si, s) in series.enumerated() {
            let y = height - 18.0, x = left + Double(si) * 150
            svg += "<rect x=\"\(x)\" y=\"\(y - 10)\" width=\"12\" height=\"12\" fill=\"\(colours[si % colours.count])\"/>"
            svg += "<text x=\"\(x + 18)\" y=\"\(y)\">\(Markup.escape(s.name))</text>\n"
        }
        return svg + "</svg>\n"
    }
}
