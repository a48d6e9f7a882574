import Foundation
import TunaRandom

/// One targeted nn.Linear: y += scaling · (x A^T) B^T with A [r, in], B [out, r].
/// x may be the dropped-out input; the caller owns dropout (see `LayerLoRA.mask`).
struct LinearLoRA: Sendable {
    let a: [Float], b: [Float]
    let rank: Int, inFeatures: Int, outFeatures: Int
    let scaling: Float

    /// y [N, out] += scaling · (x [N, in] A^T) B^T
    func addForward(_ x: [Float], rows n: Int, into y: inout [Float]) {
        let u = BLAS.linear(x, rows: n, inFeatures: inFeatures, weight: a, bias: nil, outFeatures: rank)  // [N, r]
        u.withUnsafeBufferPointer { up in b.withUnsafeBufferPointer { bp in y.withUnsafeMutableBufferPointer { yp in
            BLAS.sgemm(transB: true, m: n, n: outFeatures, k: rank, alpha: scaling, a: up.baseAddress!, lda: rank,
                       b: bp.baseAddress!, ldb: rank, beta: 1, c: yp.baseAddress!, ldc: outFeatures)
        } } }
    }

    /// Gradients of A and B from dy [N, out] and the (dropped-out) input x [N, in]; adds the
    /// LoRA path's input gradient du A [N, in] into dx when given (the caller applies the mask).
    func backward(x: [Float], dy: [Float], rows n: Int, dx: UnsafeMutablePointer<Float>?) -> (dA: [Float], dB: [Float]) {
        let u = BLAS.linear(x, rows: n, inFeatures: inFeatures, weight: a, bias: nil, outFeatures: rank)  // [N, r]
        var dA = [Float](repeating: 0, count: rank * inFeatures), dB = [Float](repeating: 0, count: outFeatures * rank)
        var du = [Float](repeating: 0, count: n * rank)
        dy.withUnsafeBufferPointer { dyp in u.withUnsafeBufferPointer { up in b.withUnsafeBufferPointer { bp in
        x.withUnsafeBufferPointer { xp in a.withUnsafeBufferPointer { ap in
            let dyb = dyp.baseAddress!, ub = up.baseAddress!
            // dB [out, r] = scaling · dy^T u
            dB.withUnsafeMutableBufferPointer {
                BLAS.sgemm(transA: true, m: outFeatures, n: rank, k: n, alpha: scaling, a: dyb, lda: outFeatures,
                           b: ub, ldb: rank, c: $0.baseAddress!, ldc: rank)
            }
            // du [N, r] = scaling · dy B
            du.withUnsafeMutableBufferPointer {
                BLAS.sgemm(m: n, n: rank, k: outFeatures, alpha: scaling, a: dyb, lda: outFeatures,
                           b: bp.baseAddress!, ldb: rank, c: $0.baseAddress!, ldc: rank)
            }
            du.withUnsafeBufferPointer { dup in
                // dA [r, in] = du^T x
                dA.withUnsafeMutableBufferPointer {
                    BLAS.sgemm(transA: true, m: rank, n: inFeatures, k: n, a: dup.baseAddress!, lda: rank,
                               b: xp.baseAddress!, ldb: inFeatures, c: $0.baseAddress!, ldc: inFeatures)
                }
                // dx [N, in] += du A
                if let dx {
                    BLAS.sgemm(m: n, n: inFeatures, k: rank, a: dup.baseAddress!, lda: rank, b: ap.baseAddress!,
                               ldb: inFeatures, beta: 1, c: dx, ldc: inFeatures)
                }
            }
        } } } } }
        return (dA, dB)
    }
}

/// One targeted 3-D expert parameter [E, in, out] (PEFT ParamWrapper, no in/out swap):
/// expert e adds scaling · (x A_e^T) B_e^T, A_e = rows e·r..<(e+1)·r of A [r·E, in] and
/// B_e[o, j] = B[o, j·E + e] of B [out, r·E] (strided, so it is gathered per expert).
struct ExpertLoRA: Sendable {
    let a: [Float], b: [Float]
    let rank: Int, experts: Int, inFeatures: Int, outFeatures: Int
    let scaling: Float

    /// B_e as a contiguous [out, r].
    func bExpert(_ e: Int) -> [Float] {
        var out = [Float](repeating: 0, count: outFeatures * rank)
        for o in 0..<outFeatures { for j in 0..<rank { out[o * rank + j] = b[o * rank * experts + j * experts + e] } }
        return out
    }

    /// u [Ne, r] = x A_e^T
    func down(_ x: [Float], rows n: Int, expert e: Int) -> [Float] {
        var u = [Float](repeating: 0, count: n * rank)
        x.withUnsafeBufferPointer { xp in a.withUnsafeBufferPointer { ap in u.withUnsafeMutableBufferPointer { up in
            BLAS.sgemm(transB: true, m: n, n: rank, k: inFeatures, a: xp.baseAddress!, lda: inFeatures,
                       b: ap.baseAddress! + e * rank * inFeatures, ldb: inFeatures, c: up.baseAddress!, ldc: rank)
        } } }
        return u
    }

    /// y [Ne, out] += scaling · (x A_e^T) B_e^T
    func addForward(_ x: [Float], rows n: Int, expert e: Int, into y: inout [Float]) {
        guard n > 0 else { return }
        let u = down(x, rows: n, expert: e), be = bExpert(e)
        u.withUnsafeBufferPointer { up in be.withUnsafeBufferPointer { bp in y.withUnsafeMutableBufferPointer { yp in
            BLAS.sgemm(transB: true, m: n, n: outFeatures, k: rank, alpha: scaling, a: up.baseAddress!, lda: rank,
                       b: bp.baseAddress!, ldb: rank, beta: 1, c: yp.baseAddress!, ldc: outFeatures)
        } } }
    }

    /// Accumulates expert e's share of dA [r·E, in] and dB [out, r·E]; adds du A_e into dx [Ne, in].
    func backward(x: [Float], dy: [Float], rows n: Int, expert e: Int, dA: inout [Float], dB: inout [Float],
                  dx: inout [Float]) {
        guard n > 0 else { return }
        let u = down(x, rows: n, expert: e), be = bExpert(e)
        var dBe = [Float](repeating: 0, count: outFeatures * rank), du = [Float](repeating: 0, count: n * rank)
        dy.withUnsafeBufferPointer { dyp in u.withUnsafeBufferPointer { up in be.withUnsafeBufferPointer { bp in
        x.withUnsafeBufferPointer { xp in a.withUnsafeBufferPointer { ap in
            let dyb = dyp.baseAddress!
            dBe.withUnsafeMutableBufferPointer {  // dB_e [out, r] = scaling · dy^T u
                BLAS.sgemm(transA: true, m: outFeatures, n: rank, k: n, alpha: scaling, a: dyb, lda: outFeatures,
                           b: up.baseAddress!, ldb: rank, c: $0.baseAddress!, ldc: rank)
            }
            du.withUnsafeMutableBufferPointer {  // du [Ne, r] = scaling · dy B_e
                BLAS.sgemm(m: n, n: rank, k: outFeatures, alpha: scaling, a: dyb, lda: outFeatures,
                           b: bp.baseAddress!, ldb: rank, c: $0.baseAddress!, ldc: rank)
            }
            du.withUnsafeBufferPointer { dup in
                dA.withUnsafeMutableBufferPointer {  // dA_e [r, in] += du^T x (rows e·r.. of dA)
                    BLAS.sgemm(transA: true, m: rank, n: inFeatures, k: n, a: dup.baseAddress!, lda: rank,
                               b: xp.baseAddress!, ldb: inFeatures, beta: 1,
                               c: $0.baseAddress! + e * rank * inFeatures, ldc: inFeatures)
                }
                dx.withUnsafeMutableBufferPointer {  // dx [Ne, in] += du A_e
                    BLAS.sgemm(m: n, n: inFeatures, k: rank, a: dup.baseAddress!, lda: rank,
                               b: ap.baseAddress! + e * rank * inFeatures, ldb: inFeatures, beta: 1,
                               c: $0.baseAddress!, ldc: inFeatures)
                }
            }
        } } } } }
        for o in 0..<outFeatures { for j in 0..<rank { dB[o * rank * experts + j * experts + e] += dBe[o * rank + j] } }
    }
}

/// The LoRA of one decoder layer during one pass, plus its dropout: masks are drawn from a
/// seed keyed by (pass, layer, module), so a recomputed forward (gradient checkpointing) and the
/// backward see exactly the masks the forward used.
struct LayerLoRA: Sendable {
    var attention: [String: LinearLoRA] = [:]
    var gateUp: ExpertLoRA?
    var down: ExpertLoRA?
    var dropout: Float = 0
    var maskSeed: UInt64?  // nil: no dropout (evaluation)
    var layer = 0

    static let empty = LayerLoRA()

    init() {}

    init(adapter: LoRAAdapter, layer: Int, experts: Int, maskSeed: UInt64?) {
        for m in LoRASettings.attentionModules { attention[m] = adapter.attention(layer: layer, module: m) }
        gateUp = adapter.expert(layer: layer, parameter: "gate_up_proj", experts: experts)
        down = adapter.expert(layer: layer, parameter: "down_proj", experts: experts)
        dropout = Float(adapter.settings.dropout)
        self.maskSeed = dropout > 0 ? maskSeed : nil
        self.layer = layer
    }

    /// Inverted-dropout scale per element (0 or 1/(1-p)) for module `module`, or nil.
    func mask(module: String, count: Int) -> [Float]? {
        guard let seed = maskSeed, dropout > 0 else { return nil }
        let index = UInt64(LoRASettings.attentionModules.firstIndex(of: module) ?? 0)
        var rng = SplitMix64(seed: seed ^ (UInt64(layer) &* 0x1000_0000_01B3) ^ (index &* 0x9E37_79B9))
        let keep = 1 / (1 - dropout)
        return (0..<count).map { _ in rng.nextUnitFloat() < dropout ? 0 : keep }
    }

    /// x ⊙ mask (x itself without dropout).
    func dropped(_ x: [Float], module: String) -> [Float] {
        guard let m = mask(module: module, count: x.count) else { return x }
        var out = x
        for i in 0..<out.count { out[i] *= m[i] }
        return out
    }
}
