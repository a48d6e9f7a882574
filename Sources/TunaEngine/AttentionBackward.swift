import Foundation

/// The backward of `Attention.forward` for LoRA training: base weights and sinks are frozen,
/// so it returns the input gradient and the LoRA gradients only.
extension Attention {
    typealias LoRAGrads = [String: (dA: [Float], dB: [Float])]

    /// dOut [N, C] -> dx [N, C] (nil when `needInput` is false: the layer below has no LoRA).
    static func backward(_ dOut: [Float], saved: AttentionActivations, weights w: AttentionWeights, config: GptOssConfig,
                         rope: Rope, batch: Batch, window: Int?, lora: LayerLoRA, needInput: Bool)
        -> (dx: [Float]?, grads: LoRAGrads) {
        let n = batch.batchSize * batch.length, c = config.hiddenSize
        let h = config.numAttentionHeads, kvh = config.kvHeads, d = config.resolvedHeadDim
        var grads: LoRAGrads = [:]

        // o_proj: context -> out
        var dContext = matmul(dOut, rows: n, inner: c, weight: w.oWeight, outFeatures: h * d)  // [N, H*D] = dOut Wo
        if let o = lora.attention["o_proj"] {
            var sink: [Float]? = dContext
            grads["o_proj"] = linearBackward(o, module: "o_proj", x: saved.context, dy: dOut, rows: n, lora: lora, dx: &sink)
            dContext = sink!
        }

        var (dq, dk, dv) = attendBackward(dContext: dContext, q: saved.q, k: saved.k, v: saved.v, sinks: w.sinks,
                                          heads: h, kvHeads: kvh, headDim: d, batch: batch, window: window)
        rope.apply(&dq, heads: h, positions: batch.positions, transposed: true)
        rope.apply(&dk, heads: kvh, positions: batch.positions, transposed: true)

        // q/k/v_proj: x -> q, k, v
        var dx: [Float]? = nil
        if needInput {
            var acc = matmul(dq, rows: n, inner: h * d, weight: w.qWeight, outFeatures: c)
            addMatmul(dk, rows: n, inner: kvh * d, weight: w.kWeight, outFeatures: c, into: &acc)
            addMatmul(dv, rows: n, inner: kvh * d, weight: w.vWeight, outFeatures: c, into: &acc)
            dx = acc
        }
        for (module, dy) in [("q_proj", dq), ("k_proj", dk), ("v_proj", dv)] {
            if let l = lora.attention[module] {
                grads[module] = linearBackward(l, module: module, x: saved.input, dy: dy, rows: n, lora: lora, dx: &dx)
            }
        }
        return (dx, grads)
    }

    /// One LoRA linear's backward with its dropout mask: x is the undropped input; the LoRA
    /// path's input gradient is masked the same way before it joins dx.
    static func linearBackward(_ l: LinearLoRA, module: String, x: [Float], dy: [Float], rows n: Int, lora: LayerLoRA,
                               dx: inout [Float]?) -> (dA: [Float], dB: [Float]) {
        let mask = lora.mask(module: module, count: x.count)
        var xd = x
        if let mask { for i in 0..<xd.count { xd[i] *= mask[i] } }
        guard dx != nil else { return l.backward(x: xd, dy: dy, rows: n, dx: nil) }
        if let mask {
            var part = [Float](repeating: 0, count: x.count)
            let g = part.withUnsafeMutableBufferPointer { l.backward(x: xd, dy: dy, rows: n, dx: $0.baseAddress!) }
            for i in 0..<part.count { dx![i] += part[i] * mask[i] }
            return g
        }
        return dx!.withUnsafeMutableBufferPointer { l.backward(x: xd, dy: dy, rows: n, dx: $0.baseAddress!) }
    }

    /// y [N, out] = x [N, inner] @ W [inner, out] (W as stored: nn.Linear's [out_of_forward, in_of_forward]).
    static func matmul(_ x: [Float], rows: Int, inner: Int, weight: [Float], outFeatures: Int) -> [Float] {
        var y = [Float](repeating: 0, count: rows * outFeatures)
        addMatmul(x, rows: rows, inner: inner, weight: weight, outFeatures: outFeatures, into: &y)
        return y
    }

    static func addMatmul(_ x: [Float], rows: Int, inner: Int, weight: [Float], outFeatures: Int, into y: inout [Float]) {
        x.withUnsafeBufferPointer { xp in weight.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
            BLAS.sgemm(m: rows, n: outFeatures, k: inner, a: xp.baseAddress!, lda: inner, b: wp.baseAddress!,
                       ldb: outFeatures, beta: 1, c: yp.baseAddress!, ldc: outFeatures)
        } } }
    }

    /// The backward of `attend`, blocked the same way. With P = softmax([S | sink]) restricted to
    /// the real keys and O = P V: dV = P^T dO, dP = dO V^T, dS = P ⊙ (dP - rowsum(P ⊙ dP)) (the
    /// sink's own column has no output, so it only enters through P), dQ = scale dS K,
    /// dK = scale dS^T Q. P is recomputed from q and k rather than stored (T x T per head).
    static func attendBackward(dContext: [Float], q: [Float], k: [Float], v: [Float], sinks: [Float], heads h: Int,
                               kvHeads kvh: Int, headDim d: Int, batch: Batch, window: Int?, block: Int = queryBlock)
        -> (dq: [Float], dk: [Float], dv: [Float]) {
        let t = batch.length, group = h / kvh
        let scale = 1 / Float(d).squareRoot()
        var dq = [Float](repeating: 0, count: q.count), dk = [Float](repeating: 0, count: k.count)
        var dv = [Float](repeating: 0, count: v.count)
        let bq = max(1, min(block, t))
        var stackedQ = [Float](repeating: 0, count: group * bq * d)   // [G*rows, D]
        var stackedDO = [Float](repeating: 0, count: group * bq * d)  // [G*rows, D]
        var stackedDQ = [Float](repeating: 0, count: group * bq * d)  // [G*rows, D]
        var probs = [Float](repeating: 0, count: group * bq * t)      // [G*rows, keys]
        var dProbs = [Float](repeating: 0, count: group * bq * t)     // [G*rows, keys], becomes dS
        var allowed = [Bool](repeating: false, count: bq * t)
        q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
        dContext.withUnsafeBufferPointer { dop in dq.withUnsafeMutableBufferPointer { dqp in
        dk.withUnsafeMutableBufferPointer { dkp in dv.withUnsafeMutableBufferPointer { dvp in
        stackedQ.withUnsafeMutableBufferPointer { sqp in stackedDO.withUnsafeMutableBufferPointer { sdop in
        stackedDQ.withUnsafeMutableBufferPointer { sdqp in probs.withUnsafeMutableBufferPointer { pp in
        dProbs.withUnsafeMutableBufferPointer { dpp in
            let qb = qp.baseAddress!, kb = kp.baseAddress!, vb = vp.baseAddress!, dob = dop.baseAddress!
            let dqb = dqp.baseAddress!, dkb = dkp.baseAddress!, dvb = dvp.baseAddress!
            let sq = sqp.baseAddress!, sdo = sdop.baseAddress!, sdq = sdqp.baseAddress!
            let pb = pp.baseAddress!, dpb = dpp.baseAddress!
            forEachTile(batch: batch, block: bq, window: window, allowed: &allowed) { tile, allowed in
                let (row, i0, rows, j0, keys) = (tile.row, tile.i0, tile.rows, tile.j0, tile.keys)
                for kvHead in 0..<kvh {
                    let firstHead = kvHead * group
                    for g in 0..<group {
                        for i in 0..<rows {
                            let src = ((row * t + i0 + i) * h + firstHead + g) * d
                            (sq + (g * rows + i) * d).update(from: qb + src, count: d)
                            (sdo + (g * rows + i) * d).update(from: dob + src, count: d)
                        }
                    }
                    let kvOffset = (row * t + j0) * kvh * d + kvHead * d
                    let m = group * rows, ld = kvh * d
                    BLAS.sgemm(transB: true, m: m, n: keys, k: d, alpha: scale, a: sq, lda: d,
                               b: kb + kvOffset, ldb: ld, c: pb, ldc: keys)
                    softmaxWithSink(pb, allowed: allowed, rowsPerHead: rows, heads: group, keys: keys,
                                    sinks: Array(sinks[firstHead..<(firstHead + group)]))
                    // dV[keys] += P^T dO
                    BLAS.sgemm(transA: true, m: keys, n: d, k: m, a: pb, lda: keys, b: sdo, ldb: d,
                               beta: 1, c: dvb + kvOffset, ldc: ld)
                    // dP = dO V^T
                    BLAS.sgemm(transB: true, m: m, n: keys, k: d, a: sdo, lda: d, b: vb + kvOffset, ldb: ld,
                               c: dpb, ldc: keys)
                    softmaxBackward(probs: pb, grads: dpb, rows: m, keys: keys)
                    // dQ = scale dS K ; dK[keys] += scale dS^T Q
                    BLAS.sgemm(m: m, n: d, k: keys, alpha: scale, a: dpb, lda: keys, b: kb + kvOffset, ldb: ld,
                               c: sdq, ldc: d)
                    BLAS.sgemm(transA: true, m: keys, n: d, k: m, alpha: scale, a: dpb, lda: keys, b: sq, ldb: d,
                               beta: 1, c: dkb + kvOffset, ldc: ld)
                    for g in 0..<group {
                        for i in 0..<rows {
                            (dqb + ((row * t + i0 + i) * h + firstHead + g) * d).update(from: sdq + (g * rows + i) * d, count: d)
                        }
                    }
                }
            }
        } } } } } } } } } } } }
        return (dq, dk, dv)
    }

    /// In place: g [rows, keys] (dP) becomes dS = P ⊙ (dP - Σ_j P_j dP_j), row by row.
    static func softmaxBackward(probs: UnsafeMutablePointer<Float>, grads: UnsafeMutablePointer<Float>, rows: Int, keys: Int) {
        let p = SharedMutable(probs), g = SharedMutable(grads)
        Parallel.chunks(rows, minChunk: max(1, 8192 / max(keys, 1))) { range in  // disjoint rows
            for r in range {
                let pr = p.base + r * keys, gr = g.base + r * keys
                var dot: Float = 0
                for j in 0..<keys { dot += pr[j] * gr[j] }
                for j in 0..<keys { gr[j] = pr[j] * (gr[j] - dot) }
            }
        }
    }
}
