import Foundation
import TunaRandom

/// The Tree-structured Parzen Estimator (Bergstra, Bardenet, Bengio and Kégl, "Algorithms for
/// Hyper-Parameter Optimization", NeurIPS 2011), as `sweep.method: tpe` uses it: one pure
/// function from the sweep's search space and its results so far to the next configuration.
/// The coordinator calls it when a worker is about to get a TPE sweep's next job; the search
/// benchmark's replay calls the same function.
///
/// Univariate, with the choices Optuna's `TPESampler` makes by default (its users' baseline):
/// the best `γ(n) = min(⌈0.1·n⌉, 25)` of the `n` results are "good", the rest "bad"; each axis
/// gets two Parzen estimators, l (good) and g (bad): one truncated Gaussian per observation plus
/// a prior (centred, as wide as the range, weight 1), bandwidths from the gaps to neighbouring
/// observations clipped to [range / min(100, 1 + n), range]; 24 candidates drawn from l, the one
/// with the largest l(x) / g(x) taken. `log_uniform` axes work in log space, `int_uniform` ones on
/// the real line, rounded. A `choice`/grid axis is a categorical: l(c) ∝ (good jobs with c) +
/// 1/K. Jobs still running count as bad (Optuna's `constant_liar`), so parallel workers are not
/// all sent to the same place. Unlike Optuna, a configuration already tried (run, running or
/// stopped) is not proposed again when another candidate is new (`propose` says how).
public enum TPE {
    public static let defaultStartup = 10
    static let candidates = 24
    static let priorWeight = 1.0

    /// One finished or running job of the sweep: its axis values (in the axes' order) and its
    /// objective value (nil while it runs, or when it was stopped early: both count as bad).
    public struct Observation: Sendable {
        public var point: [JSONValue]
        public var value: Double?
        public init(point: [JSONValue], value: Double?) { self.point = point; self.value = value }
    }

    /// The number of good observations of `n` results (Optuna's default gamma).
    public static func goodCount(_ n: Int) -> Int { min(Int((0.1 * Double(n)).rounded(.up)), 25) }

    /// The configuration for job `index` of a sweep seeded `seed`: a TPE proposal from
    /// `observations`, or nil when fewer than `startup` of them have values (then the job keeps
    /// its random draw).
    public static func propose(axes: [SweepAxis], observations: [Observation], objective: Objective,
                               startup: Int, seed: UInt64, index: Int) -> [JSONValue]? {
        let scored = observations.filter { $0.value != nil }
        guard scored.count >= max(startup, 1) else { return nil }
        // Best first; equal values in the order they came (the caller passes them by job index).
        let ranked = scored.enumerated().sorted { a, b in
            a.element.value! == b.element.value! ? a.offset < b.offset : objective.better(a.element.value!, than: b.element.value!)
        }.map(\.element)
        let nGood = max(1, goodCount(ranked.count))
        let good = Array(ranked.prefix(nGood))
        let bad = Array(ranked.dropFirst(nGood)) + observations.filter { $0.value == nil }
        var rng = SplitMix64(seed: seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15) ^ 0x5450_4500)
        // Per axis: the candidates drawn from l and each one's log l/g.
        let perAxis: [[(value: JSONValue, score: Double)]] = axes.enumerated().map { k, axis in
            candidates(axis.values, good: good.map { $0.point[k] }, bad: bad.map { $0.point[k] }, rng: &rng)
        }
        // The univariate choice: each axis's best candidate. In a space of choices that point may
        // be a configuration already tried; a deterministic trainer would only repeat it, so the
        // joint candidates (each axis's k-th), best summed score first, are tried next, then
        // draws from the prior. Continuous axes never repeat, so this changes nothing for them.
        let tried = Set(observations.map(\.point))
        let best: [JSONValue] = perAxis.map { axis in axis.max { $0.score < $1.score }!.value }
        if !tried.contains(best) { return best }
        var joint: [(point: [JSONValue], score: Double, k: Int)] = []
        for k in 0..<candidates {
            var score = 0.0
            for axis in perAxis { score += axis[k].score }
            joint.append((perAxis.map { $0[k].value }, score, k))
        }
        joint.sort { a, b in a.score == b.score ? a.k < b.k : a.score > b.score }
        if let fresh = joint.first(where: { !tried.contains($0.point) }) { return fresh.point }
        for _ in 0..<1000 {
            let p = axes.map { SweepSpec.sample($0.values, &rng) }
            if !tried.contains(p) { return p }
        }
        return best
    }

    /// `candidates` draws from the axis's l, each with its log l(x) - log g(x).
    static func candidates(_ values: SweepAxis.Values, good: [JSONValue], bad: [JSONValue], rng: inout SplitMix64) -> [(value: JSONValue, score: Double)] {
        switch values {
        case .grid(let items):
            let l = categorical(items, good), g = categorical(items, bad)
            return (0..<candidates).map { _ in let c = draw(l, &rng); return (items[c], log(l[c]) - log(g[c])) }
        case .uniform(let lo, let hi):
            return numeric(lo, hi, good.compactMap(\.doubleValue), bad.compactMap(\.doubleValue), &rng).map { (.number($0.x), $0.score) }
        case .logUniform(let lo, let hi):
            return numeric(log(lo), log(hi), good.compactMap { $0.doubleValue.map(log) }, bad.compactMap { $0.doubleValue.map(log) }, &rng)
                .map { (.number(min(hi, max(lo, exp($0.x)))), $0.score) }
        case .intUniform(let lo, let hi):
            return numeric(Double(lo) - 0.5, Double(hi) + 0.5, good.compactMap(\.doubleValue), bad.compactMap(\.doubleValue), &rng)
                .map { (.int(min(hi, max(lo, Int($0.x.rounded())))), $0.score) }
        }
    }

    // MARK: categorical

    static func categorical(_ items: [JSONValue], _ seen: [JSONValue]) -> [Double] {
        var w = [Double](repeating: priorWeight / Double(items.count), count: items.count)
        for v in seen { if let i = items.firstIndex(of: v) { w[i] += 1 } }
        let total = w.reduce(0, +)
        return w.map { $0 / total }
    }

    static func draw(_ p: [Double], _ rng: inout SplitMix64) -> Int {
        var u = rng.nextUnit(), i = 0
        while i < p.count - 1, u >= p[i] { u -= p[i]; i += 1 }
        return i
    }

    // MARK: numeric

    /// A mixture of Gaussians truncated to [lo, hi]: means, bandwidths, weights.
    struct Parzen {
        var mus: [Double], sigmas: [Double], weights: [Double]
        let lo: Double, hi: Double

        init(_ xs: [Double], lo: Double, hi: Double) {
            self.lo = lo; self.hi = hi
            let width = hi - lo
            // The observations and the prior (centred, as wide as the range), sorted.
            var points = xs.map { (mu: $0, prior: false) } + [(mu: (lo + hi) / 2, prior: true)]
            points.sort { $0.mu < $1.mu }
            let minSigma = width / min(100, 1 + Double(points.count))
            let ms = points.map(\.mu)
            mus = ms
            sigmas = points.indices.map { i in
                if points[i].prior { return width }
                let left = i > 0 ? ms[i] - ms[i - 1] : ms[i] - lo
                let right = i < ms.count - 1 ? ms[i + 1] - ms[i] : hi - ms[i]
                return min(width, max(minSigma, max(left, right)))
            }
            let raw = points.map { $0.prior ? TPE.priorWeight : 1 }
            let total = raw.reduce(0, +)
            weights = raw.map { $0 / total }
        }

        func sample(_ rng: inout SplitMix64) -> Double {
            let k = TPE.draw(weights, &rng)
            // Rejection within the bounds; a component almost wholly outside them falls back to a clamp.
            for _ in 0..<100 {
                let x = mus[k] + sigmas[k] * TPE.gaussian(&rng)
                if x >= lo && x <= hi { return x }
            }
            return min(hi, max(lo, mus[k]))
        }

        func logDensity(_ x: Double) -> Double {
            var p = 0.0
            for k in mus.indices {
                let mass = TPE.cdf((hi - mus[k]) / sigmas[k]) - TPE.cdf((lo - mus[k]) / sigmas[k])
                let z = (x - mus[k]) / sigmas[k]
                p += weights[k] * exp(-0.5 * z * z) / (sigmas[k] * (2 * Double.pi).squareRoot() * max(mass, 1e-12))
            }
            return log(max(p, 1e-300))
        }
    }

    static func numeric(_ lo: Double, _ hi: Double, _ good: [Double], _ bad: [Double], _ rng: inout SplitMix64) -> [(x: Double, score: Double)] {
        guard hi > lo else { return Array(repeating: (lo, 0), count: candidates) }
        let l = Parzen(good, lo: lo, hi: hi), g = Parzen(bad, lo: lo, hi: hi)
        return (0..<candidates).map { _ in
            let x = l.sample(&rng)
            return (x, l.logDensity(x) - g.logDensity(x))
        }
    }

    /// A standard normal draw (Box-Muller, from two uniforms of the seeded stream).
    static func gaussian(_ rng: inout SplitMix64) -> Double {
        let u1 = max(rng.nextUnit(), 1e-300), u2 = rng.nextUnit()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }

    static func cdf(_ z: Double) -> Double { 0.5 * erfc(-z / 2.0.squareRoot()) }
}
