import Foundation

/// An axis: data range to pixels, linear or logarithmic (a hyperparameter drawn log-uniform, a
/// learning rate over decades), with "nice" ticks (1, 2, 5 times a power of ten; decades on a
/// log axis).
public struct PlotScale: Sendable, Equatable {
    public var lo: Double, hi: Double
    public var log: Bool

    /// A scale over `values` (non-finite ones ignored): logarithmic when asked and every value is
    /// positive; a range of one value is widened so it has a middle.
    /// `pad`: a margin on both sides, as a fraction of the range, so no point sits on the frame.
    public init(_ values: [Double], log wantLog: Bool = false, pad: Double = 0) {
        let v = values.filter(\.isFinite)
        log = wantLog && !v.isEmpty && v.allSatisfy { $0 > 0 }
        var a = v.min() ?? 0, b = v.max() ?? 1
        if a == b { (a, b) = log ? (a / 2, b * 2) : (a - max(abs(a) * 0.1, 0.5), b + max(abs(b) * 0.1, 0.5)) }
        if pad > 0 {
            if log { let r = Foundation.pow(b / a, pad); (a, b) = (a / r, b * r) } else { let m = (b - a) * pad; (a, b) = (a - m, b + m) }
        }
        (lo, hi) = (a, b)
    }

    /// Where `v` falls in 0...1 of the axis.
    public func fraction(_ v: Double) -> Double {
        log ? (Foundation.log10(v) - Foundation.log10(lo)) / (Foundation.log10(hi) - Foundation.log10(lo)) : (v - lo) / (hi - lo)
    }

    /// About `count` tick values inside the range.
    public func ticks(_ count: Int = 5) -> [Double] {
        if log {
            let a = Int(Foundation.floor(Foundation.log10(lo))), b = Int(Foundation.ceil(Foundation.log10(hi)))
            let decades = (a...b).map { Foundation.pow(10, Double($0)) }.filter { $0 >= lo * 0.999_999 && $0 <= hi * 1.000_001 }
            return decades.count >= 2 ? decades : [lo, hi]
        }
        let raw = (hi - lo) / Double(max(1, count))
        let p = Foundation.pow(10, Foundation.floor(Foundation.log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * p }.first { $0 >= raw } ?? 10 * p
        var out: [Double] = []
        var t = Foundation.ceil(lo / step) * step
        while t <= hi + step * 1e-9 { out.append(abs(t) < step * 1e-9 ? 0 : t); t += step }
        return out
    }

    /// A tick's label: short, the same for the same value everywhere.
    public static func label(_ v: Double) -> String {
        if v == 0 { return "0" }
        let a = abs(v)
        return a >= 1e-3 && a < 1e5 ? String(format: "%g", (v * 1e6).rounded() / 1e6) : String(format: "%.0e", v)
    }
}
