import FoundationXML
import XCTest
@testable import TunaCore

/// `tuna plot`'s SVG, on hand-made data (ExportTests plots a real sweep and renders it with
/// rsvg-convert).
final class PlotTests: XCTestCase {
    func testTicksAreNiceAndLogAxesUseDecades() {
        let ticks = PlotScale([0, 1]).ticks()
        XCTAssertEqual(ticks.count, 6)
        for (t, want) in zip(ticks, [0, 0.2, 0.4, 0.6, 0.8, 1]) { XCTAssertEqual(t, want, accuracy: 1e-12) }
        XCTAssertEqual(PlotScale([0.3, 7.9]).ticks().first, 2, "steps of 1, 2 or 5 times a power of ten")
        XCTAssertEqual(PlotScale([1e-5, 1e-3], log: true).ticks(), [1e-5, 1e-4, 1e-3])
        XCTAssertFalse(PlotScale([0, 1e-3], log: true).log, "a log axis needs positive values")
        XCTAssertEqual(PlotScale([2, 2]).fraction(2), 0.5, "one value sits in the middle")
        XCTAssertEqual(PlotScale.label(0.0025000001), "0.0025")
        XCTAssertEqual(PlotScale.label(0.0002), "2e-04", "below 1e-3: short scientific")
        XCTAssertEqual(PlotScale.label(3e-6), "3e-06")
        XCTAssertEqual(PlotScale.label(2.5), "2.5")
    }

    /// One polyline per job with points (and a mark where it has one point), a legend entry each, a point per job in every
    /// parameter panel (categories for strings), the text escaped, and well-formed XML.
    func testASweepFigureHasASeriesPerJobAndAPanelPerParameter() throws {
        let series = (0..<3).map { i in
            SweepPlot.Series(label: "job \(i): lr=\(i) <&>", points: (1...5).map { (Double($0), 3.0 / Double($0 + i)) })
        } + [SweepPlot.Series(label: "empty", points: []), SweepPlot.Series(label: "one eval", points: [(2, 1.0)])]
        let plot = SweepPlot(title: "sweep 1: a & b", yLabel: "eval/loss", series: series, scatters: [
            SweepPlot.Scatter(parameter: "train.learning_rate", points: [(.number(1e-5), 2.0), (.number(1e-3), 1.5), (.number(1e-4), 1.0)]),
            SweepPlot.Scatter(parameter: "lora.target_modules", points: [(.string("q_proj"), 2.0), (.string("all"), 1.0)]),
        ], objective: "val_loss")
        let svg = plot.svg
        XCTAssertEqual(svg.components(separatedBy: #"<polyline class="series""#).count - 1, 4, "a job without points draws nothing")
        XCTAssertEqual(svg.components(separatedBy: #"<circle class="mark""#).count - 1, 1, "a curve of one point is a mark")
        XCTAssertEqual(svg.components(separatedBy: #"class="legend""#).count - 1, 5)
        XCTAssertEqual(svg.components(separatedBy: #"<circle class="point""#).count - 1, 5)
        XCTAssert(svg.contains("train.learning_rate (log)"), "three decades: a log axis")
        XCTAssert(svg.contains(">q_proj<") && svg.contains(">all<"), "categories are named on the axis")
        XCTAssert(svg.contains("lr=0 &lt;&amp;&gt;"))
        let parser = XMLParser(data: Data(svg.utf8))
        XCTAssert(parser.parse(), "well-formed XML: \(String(describing: parser.parserError))")
    }
}
