import Foundation

/// Rotary position embedding with YaRN scaling, as transformers' `_compute_yarn_parameters`
/// and gpt-oss's `_apply_rotary_emb` compute it:
///   inv_freq[i] (i < D/2) blends interpolated (1/(factor*base^(2i/D))) and extrapolated
///   (1/base^(2i/D)) frequencies with a linear ramp between the correction dims of beta_fast and
///   beta_slow; cos/sin are multiplied by attention_factor (0.1*ln(factor)+1 by default).
///   Rotation is "half split": x1 = x[:D/2], x2 = x[D/2:], out = [x1*cos - x2*sin, x2*cos + x1*sin].
/// Float arithmetic mirrors torch's fp32 steps; the correction range is Double like Python's math.
public struct Rope: Sendable {
    public let headDim: Int          // D
    public let invFreq: [Float]      // [D/2]
    public let attentionScaling: Float

    public init(config: GptOssConfig) {
        let rope = config.resolvedRope
        let dim = config.resolvedHeadDim
        let base = Float(rope.ropeTheta ?? 150000)
        headDim = dim
        let half = dim / 2
        let posFreqs = (0..<half).map { i in pow(base, Float(2 * i) / Float(dim)) }
        guard rope.ropeType == "yarn" else {
            invFreq = posFreqs.map { 1 / $0 }
            attentionScaling = 1
            return
        }
        let original = Double(rope.originalMaxPositionEmbeddings ?? config.maxPositionEmbeddings ?? 131072)
        let factor = rope.factor ?? (Double(config.maxPositionEmbeddings ?? 131072) / original)
        func mscale(_ scale: Double, _ m: Double = 1) -> Double { scale <= 1 ? 1 : 0.1 * m * log(scale) + 1 }
        var attention: Double
        if let a = rope.attentionFactor {
            attention = a
        } else if let m = rope.mscale, let mAll = rope.mscaleAllDim, m != 0, mAll != 0 {
            attention = mscale(factor, m) / mscale(factor, mAll)
        } else {
            attention = mscale(factor)
        }
        // transformers: `get("beta_fast") or 32` — a 0 also falls back to the default
        let betaFast = (rope.betaFast ?? 0) != 0 ? rope.betaFast ?? 32 : 32
        let betaSlow = (rope.betaSlow ?? 0) != 0 ? rope.betaSlow ?? 1 : 1
        let thetaD = Double(rope.ropeTheta ?? 150000)
        func correctionDim(_ rotations: Double) -> Double {
            Double(dim) * log(original / (rotations * 2 * Double.pi)) / (2 * log(thetaD))
        }
        var low = correctionDim(betaFast), high = correctionDim(betaSlow)
        if rope.truncate ?? true { low = low.rounded(.down); high = high.rounded(.up) }
        low = max(low, 0); high = min(high, Double(dim - 1))
        if low == high { high += 0.001 }  // transformers' singularity guard
        let span = Float(high - low), lowF = Float(low), factorF = Float(factor)
        invFreq = (0..<half).map { i in
            let ramp = min(max((Float(i) - lowF) / span, 0), 1)
            let extrapolationFactor = 1 - ramp
            let interpolation = 1 / (factorF * posFreqs[i])
            let extrapolation = 1 / posFreqs[i]
            return interpolation * (1 - extrapolationFactor) + extrapolation * extrapolationFactor
        }
        attentionScaling = Float(attention)
    }

    /// cos and sin tables for one position: [D/2] each, already scaled by attention_scaling.
    func table(position: Int32) -> (cos: [Float], sin: [Float]) {
        let p = Float(position)
        var c = [Float](repeating: 0, count: invFreq.count), s = c
        for i in 0..<invFreq.count {
            let angle = invFreq[i] * p
            c[i] = Foundation.cos(angle) * attentionScaling
            s[i] = Foundation.sin(angle) * attentionScaling
        }
        return (c, s)
    }

    /// Rotates x [N, heads*D] in place; positions [N]. `transposed` applies the transpose of
    /// the rotation (sin negated), which is the backward of `apply`: the rotation is linear, so
    /// d(loss)/dx = R^T d(loss)/dy (the attention scaling rides along in cos and sin).
    func apply(_ x: inout [Float], heads: Int, positions: [Int32], transposed: Bool = false) {
        let sign: Float = transposed ? -1 : 1
        let d = headDim, half = d / 2
        var cache: [Int32: (cos: [Float], sin: [Float])] = [:]
        x.withUnsafeMutableBufferPointer { xp in
            for (n, p) in positions.enumerated() {
                let t: (cos: [Float], sin: [Float])
                if let hit = cache[p] { t = hit } else { t = table(position: p); cache[p] = t }
                for h in 0..<heads {
                    let o = (n * heads + h) * d
                    for i in 0..<half {
                        let x1 = xp[o + i], x2 = xp[o + half + i]
                        let sin = sign * t.sin[i]
                        xp[o + i] = x1 * t.cos[i] - x2 * sin
                        xp[o + half + i] = x2 * t.cos[i] + x1 * sin
                    }
                }
            }
        }
    }
}
