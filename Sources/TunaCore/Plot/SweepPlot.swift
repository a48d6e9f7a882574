import Foundation

/// `tuna plot`'s figure, as SVG (pure: data in, text out). A sweep: each job's curve of one tag
/// (`Curves`) against step, one colour per job and a legend of what varies; below, the objective
/// of every job that has one against each varied hyperparameter (a log axis for a parameter
/// whose values span more than a decade, a category axis for one that is not a number). A job:
/// its train and eval curves.
public struct SweepPlot {
    public struct Series {
        public var label: String
        public var points: [(x: Double, y: Double)]
        public init(label: String, points: [(x: Double, y: Double)]) { self.label = label; self.points = points }
    }

    /// One objective-against-parameter panel: a value per job (a number, or a category's name).
    public struct Scatter {
        public var parameter: String
        public var points: [(x: JSONValue, y: Double)]
        public init(parameter: String, points: [(x: JSONValue, y: Double)]) { self.parameter = parameter; self.points = points }
    }

    public var title: String
    public var yLabel: String
    public var series: [Series]
    public var scatters: [Scatter]
    public var objective: String

    public init(title: String, yLabel: String, series: [Series], scatters: [Scatter] = [], objective: String = "") {
        self.title = title; self.yLabel = yLabel; self.series = series; self.scatters = scatters; self.objective = objective
    }

    /// Ten colours that stay apart for the colour-blind (Okabe-Ito, then Tol's muted).
    public static let palette = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#332288", "#882255", "#44AA99"]
    static let legendMax = 24

    public var svg: String {
        let width = 960.0, lineH = 420.0, panelW = 300.0, panelH = 260.0
        let perRow = 3
        let rows = (scatters.count + perRow - 1) / perRow
        let height = 40 + lineH + Double(rows) * (panelH + 20) + 10
        var out = ##"<svg xmlns="http://www.w3.org/2000/svg" width="\##(Int(width))" height="\##(Int(height))" viewBox="0 0 \##(Int(width)) \##(Int(height))" font-family="sans-serif" font-size="11">"## + "\n"
        out += ##"<rect width="100%" height="100%" fill="white"/>"## + "\n"
        out += ##"<text x="\##(Int(width / 2))" y="22" text-anchor="middle" font-size="15">\##(Self.escape(title))</text>"## + "\n"
        // The curves, with the legend on the right.
        let legendW = 260.0
        let frame = Frame(x: 60, y: 40, w: width - 60 - legendW - 20, h: lineH - 50)
        let xs = PlotScale(series.flatMap { $0.points.map(\.x) })
        let ys = PlotScale(series.flatMap { $0.points.map(\.y) }, pad: 0.04)
        out += axes(frame, xs, ys, xLabel: "step", yLabel: yLabel)
        for (i, s) in series.enumerated() where !s.points.isEmpty {
            let pts = s.points.map { "\(Self.n(frame.px(xs, $0.x))),\(Self.n(frame.py(ys, $0.y)))" }.joined(separator: " ")
            out += ##"<polyline class="series" data-label="\##(Self.escape(s.label))" fill="none" stroke="\##(Self.palette[i % Self.palette.count])" stroke-width="1.5" points="\##(pts)"/>"## + "\n"
            if s.points.count == 1 {   // a line of one point draws nothing: a mark instead
                out += ##"<circle class="mark" cx="\##(Self.n(frame.px(xs, s.points[0].x)))" cy="\##(Self.n(frame.py(ys, s.points[0].y)))" r="3" fill="\##(Self.palette[i % Self.palette.count])"/>"## + "\n"
            }
        }
        for (i, s) in series.prefix(Self.legendMax).enumerated() {
            let y = frame.y + 8 + Double(i) * 15
            out += ##"<line x1="\##(Self.n(width - legendW))" y1="\##(Self.n(y))" x2="\##(Self.n(width - legendW + 18))" y2="\##(Self.n(y))" stroke="\##(Self.palette[i % Self.palette.count])" stroke-width="2"/>"##
            out += ##"<text class="legend" x="\##(Self.n(width - legendW + 24))" y="\##(Self.n(y + 4))">\##(Self.escape(s.label))</text>"## + "\n"
        }
        if series.count > Self.legendMax {
            out += ##"<text x="\##(Self.n(width - legendW))" y="\##(Self.n(frame.y + 8 + Double(Self.legendMax) * 15 + 4))">and \##(series.count - Self.legendMax) more</text>"## + "\n"
        }
        // The objective against each varied parameter.
        for (k, sc) in scatters.enumerated() {
            let f = Frame(x: 60 + Double(k % perRow) * (panelW + 20), y: 40 + lineH + Double(k / perRow) * (panelH + 20), w: panelW - 60, h: panelH - 50)
            let ys = PlotScale(sc.points.map(\.y), pad: 0.06)
            let numbers = sc.points.compactMap { $0.x.doubleValue }
            let categories = numbers.count == sc.points.count ? nil : Array(Set(sc.points.map { $0.x.stringValue ?? $0.x.canonicalJSON })).sorted()
            if let categories {
                let xs = PlotScale([0, Double(max(1, categories.count - 1))], pad: 0.15)
                out += axes(f, xs, ys, xLabel: sc.parameter, yLabel: objective, xTicks: categories.enumerated().map { (Double($0.offset), $0.element) })
                for p in sc.points {
                    let i = Double(categories.firstIndex(of: p.x.stringValue ?? p.x.canonicalJSON)!)
                    out += ##"<circle class="point" cx="\##(Self.n(f.px(xs, i)))" cy="\##(Self.n(f.py(ys, p.y)))" r="3.5" fill="#0072B2" fill-opacity="0.7"/>"## + "\n"
                }
            } else {
                let positive = numbers.allSatisfy { $0 > 0 }
                let span = positive ? (numbers.max() ?? 1) / max(numbers.min() ?? 1, .leastNormalMagnitude) : 1
                let xs = PlotScale(numbers, log: positive && span > 10, pad: 0.06)
                out += axes(f, xs, ys, xLabel: sc.parameter + (xs.log ? " (log)" : ""), yLabel: objective)
                for p in sc.points {
                    out += ##"<circle class="point" cx="\##(Self.n(f.px(xs, p.x.doubleValue!)))" cy="\##(Self.n(f.py(ys, p.y)))" r="3.5" fill="#0072B2" fill-opacity="0.7"/>"## + "\n"
                }
            }
        }
        return out + "</svg>\n"
    }

    struct Frame {
        var x, y, w, h: Double
        func px(_ s: PlotScale, _ v: Double) -> Double { x + s.fraction(v) * w }
        func py(_ s: PlotScale, _ v: Double) -> Double { y + h - s.fraction(v) * h }
    }

    func axes(_ f: Frame, _ xs: PlotScale, _ ys: PlotScale, xLabel: String, yLabel: String, xTicks: [(Double, String)]? = nil) -> String {
        var o = ##"<rect x="\##(Self.n(f.x))" y="\##(Self.n(f.y))" width="\##(Self.n(f.w))" height="\##(Self.n(f.h))" fill="none" stroke="#888"/>"## + "\n"
        for (v, text) in xTicks ?? xs.ticks().map({ ($0, PlotScale.label($0)) }) {
            let x = f.px(xs, v)
            o += ##"<line x1="\##(Self.n(x))" y1="\##(Self.n(f.y + f.h))" x2="\##(Self.n(x))" y2="\##(Self.n(f.y + f.h + 4))" stroke="#888"/>"##
            o += ##"<text x="\##(Self.n(x))" y="\##(Self.n(f.y + f.h + 16))" text-anchor="middle">\##(Self.escape(text))</text>"## + "\n"
        }
        for v in ys.ticks() {
            let y = f.py(ys, v)
            o += ##"<line x1="\##(Self.n(f.x - 4))" y1="\##(Self.n(y))" x2="\##(Self.n(f.x + f.w))" y2="\##(Self.n(y))" stroke="#eee"/>"##
            o += ##"<text x="\##(Self.n(f.x - 6))" y="\##(Self.n(y + 4))" text-anchor="end">\##(PlotScale.label(v))</text>"## + "\n"
        }
        o += ##"<text x="\##(Self.n(f.x + f.w / 2))" y="\##(Self.n(f.y + f.h + 32))" text-anchor="middle">\##(Self.escape(xLabel))</text>"## + "\n"
        o += ##"<text transform="translate(\##(Self.n(f.x - 44)),\##(Self.n(f.y + f.h / 2))) rotate(-90)" text-anchor="middle">\##(Self.escape(yLabel))</text>"## + "\n"
        return o
    }

    static func n(_ v: Double) -> String { String(format: "%.1f", v.isFinite ? v : 0) }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
