import Foundation

/// An SVG line chart: one polyline per series over shared linear axes with round-number ticks.
/// Non-finite points (a skipped step's NaN loss) are left out, never drawn at an edge.
public struct LineChart {
    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public var colour: String
        /// Dots on the points too: for sparse series such as periodic evaluations.
        public var markers: Bool
        public init(name: String, points: [(x: Double, y: Double)], colour: String = "#4e79a7", markers: Bool = false) {
            self.name = name; self.points = points; self.colour = colour; self.markers = markers
        }
        var finitePoints: [(x: Double, y: Double)] { points.filter { $0.x.isFinite && $0.y.isFinite } }
    }

    public var title: String
    public var xLabel: String
    public var series: [Series]
    public var width = 560.0
    public var height = 300.0

    public init(title: String, xLabel: String, series: [Series]) {
        self.title = title; self.xLabel = xLabel; self.series = series
    }

    /// The legend gets its own row between the title and the plot, so it never hides a line.
    var margin: (left: Double, right: Double, top: Double, bottom: Double) {
        (left: 64, right: 16, top: series.count > 1 ? 52 : 34, bottom: 44)
    }

    public func svg() -> String {
        let m = margin, plotW = width - m.left - m.right, plotH = height - m.top - m.bottom
        let all = series.flatMap(\.finitePoints)
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"\(Int(width))\" height=\"\(Int(height))\" "
            + "viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"11\">\n"
        svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        svg += "<text x=\"\(Markup.coordinate(width / 2))\" y=\"20\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">\(Markup.escape(title))</text>\n"
        guard !all.isEmpty else {
            let y = Markup.coordinate(m.top + plotH / 2)
            return svg + "<text x=\"\(Markup.coordinate(width / 2))\" y=\"\(y)\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n</svg>\n"
        }
        let xAxis = Axis(all.map(\.x)), yAxis = Axis(all.map(\.y), padding: 0.05)
        func px(_ x: Double) -> Double { m.left + plotW * xAxis.fraction(x) }
        func py(_ y: Double) -> Double { m.top + plotH * (1 - yAxis.fraction(y)) }
        for t in yAxis.ticks {
            let y = Markup.coordinate(py(t))
            svg += "<line x1=\"\(m.left)\" y1=\"\(y)\" x2=\"\(m.left + plotW)\" y2=\"\(y)\" stroke=\"#e4e4e4\"/>"
            svg += "<text x=\"\(m.left - 6)\" y=\"\(y)\" dy=\"4\" text-anchor=\"end\" fill=\"#444\">\(Markup.tick(t))</text>\n"
        }
        for t in xAxis.ticks {
            let x = Markup.coordinate(px(t))
            svg += "<line x1=\"\(x)\" y1=\"\(m.top + plotH)\" x2=\"\(x)\" y2=\"\(m.top + plotH + 4)\" stroke=\"#888\"/>"
            svg += "<text x=\"\(x)\" y=\"\(m.top + plotH + 16)\" text-anchor=\"middle\" fill=\"#444\">\(Markup.tick(t))</text>\n"
        }
        svg += "<rect x=\"\(m.left)\" y=\"\(m.top)\" width=\"\(plotW)\" height=\"\(plotH)\" fill=\"none\" stroke=\"#888\"/>\n"
        svg += "<text x=\"\(Markup.coordinate(m.left + plotW / 2))\" y=\"\(height - 8)\" text-anchor=\"middle\" fill=\"#444\">\(Markup.escape(xLabel))</text>\n"
        for s in series {
            let points = s.finitePoints
            guard !points.isEmpty else { continue }
            let coordinates = points.map { "\(Markup.coordinate(px($0.x))),\(Markup.coordinate(py($0.y)))" }
            svg += "<polyline fill=\"none\" stroke=\"\(s.colour)\" stroke-width=\"2\" stroke-linejoin=\"round\" points=\"\(coordinates.joined(separator: " "))\">"
            svg += "<title>\(Markup.escape(s.name))</title></polyline>\n"
            if s.markers || points.count == 1 {
                for p in points {
                    svg += "<circle cx=\"\(Markup.coordinate(px(p.x)))\" cy=\"\(Markup.coordinate(py(p.y)))\" r=\"3\" fill=\"\(s.colour)\"/>"
                }
                svg += "\n"
            }
        }
        if series.count > 1 {
            var x = m.left
            for s in series {
                svg += "<rect x=\"\(Markup.coordinate(x))\" y=\"30\" width=\"10\" height=\"10\" fill=\"\(s.colour)\"/>"
                svg += "<text x=\"\(Markup.coordinate(x + 14))\" y=\"39\" fill=\"#222\">\(Markup.escape(s.name))</text>\n"
                x += 28 + Double(s.name.count) * 7.2  // a generous average glyph width at 11 px
            }
        }
        return svg + "</svg>\n"
    }
}

/// A linear axis over the data's range (plus `padding` of it each side, so a line does not run
/// along the frame) with 1-2-5 round ticks; a flat range is widened so a constant series (a fixed
/// τ) sits mid-chart.
struct Axis {
    let low: Double, high: Double, ticks: [Double]

    init(_ values: [Double], padding: Double = 0, targetTicks: Int = 5) {
        var lo = values.min()!, hi = values.max()!
        if hi - lo <= abs(hi) * 1e-9 {
            let pad = hi == 0 ? 1 : abs(hi) * 0.1
            lo -= pad; hi += pad
        }
        let span = hi - lo
        lo -= span * padding; hi += span * padding
        let rough = (hi - lo) / Double(targetTicks)
        let power = pow(10, floor(log10(rough)))
        let step = [1.0, 2.0, 5.0, 10.0].map { $0 * power }.first { $0 >= rough } ?? 10 * power
        let first = (lo / step).rounded(.up) * step
        ticks = stride(from: first, through: hi + step * 1e-9, by: step).map { abs($0) < step * 1e-9 ? 0 : $0 }
        low = lo; high = hi
    }

    func fraction(_ v: Double) -> Double { (v - low) / (high - low) }
}
