import Foundation

/// GptOssRMSNorm: y = weight * x / sqrt(mean(x^2) + eps), always in fp32.
enum RMSNorm {
    /// x [N, C], weight [C] -> y [N, C]. Also returns rstd [N] (1/sqrt(mean+eps)), which is what
    /// a backward pass needs besides x.
    static func forward(_ x: [Float], weight: [Float], rows: Int, eps: Float) -> (y: [Float], rstd: [Float]) {
        let c = weight.count
        var y = [Float](repeating: 0, count: rows * c)
        var rstd = [Float](repeating: 0, count: rows)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                for r in 0..<rows {
                    let row = r * c
                    // accumulate in Double: the mean of squares is the one reduction whose rounding
                    // grows with C; the result is rounded to fp32 like torch's variance
                    var sum = 0.0
                    for i in 0..<c { let v = Double(xp[row + i]); sum += v * v }
                    let variance = Float(sum / Double(c))
                    let s = 1 / (variance + eps).squareRoot()
                    rstd[r] = s
                    for i in 0..<c { yp[row + i] = weight[i] * (xp[row + i] * s) }
                }
            }
        }
        return (y, rstd)
    }
}

extension RMSNorm {
    /// Input gradient with the weight frozen: with g = w ⊙ dy and r = rstd,
    /// dx = r (g - x r² mean(g ⊙ x)) per row.
    static func backward(_ dy: [Float], x: [Float], rstd: [Float], weight: [Float], rows: Int) -> [Float] {
        let c = weight.count
        var dx = [Float](repeating: 0, count: rows * c)
        dy.withUnsafeBufferPointer { dyp in x.withUnsafeBufferPointer { xp in weight.withUnsafeBufferPointer { wp in
        rstd.withUnsafeBufferPointer { sp in dx.withUnsafeMutableBufferPointer { dxp in
            let dy = Shared(dyp.baseAddress!), x = Shared(xp.baseAddress!), w = Shared(wp.baseAddress!)
            let rstd = Shared(sp.baseAddress!), dx = SharedMutable(dxp.baseAddress!)
            Parallel.chunks(rows, minChunk: max(1, 16384 / max(c, 1))) { range in  // disjoint rows of dx
                for r in range {
                    let row = r * c, s = rstd[r]
                    var dot = 0.0
                    for i in 0..<c { dot += Double(w[i] * dy[row + i]) * Double(x[row + i]) }
                    let coef = Float(dot / Double(c)) * s * s
                    for i in 0..<c { dx[row + i] = s * (w[i] * dy[row + i] - x[row + i] * coef) }
                }
            }
        } } } } }
        return dx
    }
}
