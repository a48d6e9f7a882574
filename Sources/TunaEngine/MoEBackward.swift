import Foundation

/// The backward of `MoE.forward` for LoRA training (router and expert weights frozen).
extension MoE {
    typealias ExpertGrads = [String: (dA: [Float], dB: [Float])]  // by "gate_up_proj" / "down_proj"

    /// dOut [N, C] -> dx [N, C] through the experts and the router.
    ///  - experts: out[t] = Σ_j w_tj y_e(x_t); dy = w · dOut, dact = dy W_down^T, dgu through the
    ///    clamped SwiGLU, dx_e = dgu W_gu^T (+ the LoRA paths).
    ///  - router: dw_tj = dOut_t · y_e(x_t); w = softmax(chosen logits), so
    ///    dlogit_j = w_j (dw_j - Σ_i w_i dw_i) on the chosen experts and 0 elsewhere (top-k
    ///    selection itself has no gradient); dx += dlogits W_router.
    static func backward(_ dOut: [Float], saved: MoEActivations, weights w: MoEWeights, config: GptOssConfig, tokens n: Int,
                         lora: LayerLoRA) -> (dx: [Float], grads: ExpertGrads) {
        let c = config.hiddenSize, e = config.numLocalExperts, k = config.topK, inter = config.intermediateSize
        let routed = routing(experts: saved.topExperts, weights: saved.topWeights, tokens: n, experts: e, topK: k)
        var dx = [Float](repeating: 0, count: n * c)
        var dWeights = [Float](repeating: 0, count: n * k)  // d loss / d routing weight
        var gateUpA = [Float](repeating: 0, count: lora.gateUp?.a.count ?? 0)
        var gateUpB = [Float](repeating: 0, count: lora.gateUp?.b.count ?? 0)
        var downA = [Float](repeating: 0, count: lora.down?.a.count ?? 0)
        var downB = [Float](repeating: 0, count: lora.down?.b.count ?? 0)

        for expert in 0..<e where !routed[expert].isEmpty {
            let list = routed[expert], ne = list.count
            let gateUp = saved.gateUp[expert], y = saved.expertOutput[expert]
            // dy [Ne, C] = w · dOut[token]; dw = dOut[token] · y
            var dy = [Float](repeating: 0, count: ne * c)
            dOut.withUnsafeBufferPointer { gp in y.withUnsafeBufferPointer { yp in
            dy.withUnsafeMutableBufferPointer { dyp in dWeights.withUnsafeMutableBufferPointer { dwp in
                let g = Shared(gp.baseAddress!), ys = Shared(yp.baseAddress!)
                let dys = SharedMutable(dyp.baseAddress!), dws = SharedMutable(dwp.baseAddress!)
                // a token appears at most once per expert: chunks of `list` write disjoint rows of
                // dy and disjoint entries of dWeights
                Parallel.chunks(ne, minChunk: 32) { range in
                    for r in range {
                        let item = list[r], src = g.base + item.token * c, yr = ys.base + r * c, dr = dys.base + r * c
                        var dot: Float = 0
                        for i in 0..<c {
                            dr[i] = src[i] * item.weight
                            dot += src[i] * yr[i]
                        }
                        dws[item.token * k + item.slot] = dot
                    }
                }
            } } } }
            // down: act [Ne, I] -> y
            var dAct = Attention.matmulTransposed(dy, rows: ne, outFeatures: inter, weights: w.down,
                                                  offset: expert * inter * c, inner: c)  // dy W_down[e]^T
            if let l = lora.down {
                let act = swiglu(gateUp, rows: ne, intermediate: inter, limit: config.limit)
                l.backward(x: act, dy: dy, rows: ne, expert: expert, dA: &downA, dB: &downB, dx: &dAct)
            }
            let dGateUp = swigluBackward(gateUp, dOut: dAct, rows: ne, intermediate: inter, limit: config.limit)  // [Ne, 2I]
            // gate_up: xe [Ne, C] -> gateUp
            var dxe = Attention.matmulTransposed(dGateUp, rows: ne, outFeatures: c, weights: w.gateUp,
                                                 offset: expert * c * 2 * inter, inner: 2 * inter)  // dgu W_gu[e]^T
            if let l = lora.gateUp {
                let xe = gather(saved.input, rows: list.map(\.token), width: c)
                l.backward(x: xe, dy: dGateUp, rows: ne, expert: expert, dA: &gateUpA, dB: &gateUpB, dx: &dxe)
            }
            dxe.withUnsafeBufferPointer { ep in dx.withUnsafeMutableBufferPointer { xp in
                let src = Shared(ep.baseAddress!), dst = SharedMutable(xp.baseAddress!)
                Parallel.chunks(ne, minChunk: 32) { range in  // disjoint rows of dx (one token once per expert)
                    for r in range {
                        let from = src.base + r * c, to = dst.base + list[r].token * c
                        for i in 0..<c { to[i] += from[i] }
                    }
                }
            } }
        }

        // router: softmax over the chosen logits, then the linear layer
        var dLogits = [Float](repeating: 0, count: n * e)
        for t in 0..<n {
            var dot: Float = 0
            for j in 0..<k { dot += saved.topWeights[t * k + j] * dWeights[t * k + j] }
            for j in 0..<k {
                let wj = saved.topWeights[t * k + j]
                dLogits[t * e + Int(saved.topExperts[t * k + j])] = wj * (dWeights[t * k + j] - dot)
            }
        }
        Attention.addMatmul(dLogits, rows: n, inner: e, weight: w.routerWeight, outFeatures: c, into: &dx)

        var grads: ExpertGrads = [:]
        if lora.gateUp != nil { grads["gate_up_proj"] = (gateUpA, gateUpB) }
        if lora.down != nil { grads["down_proj"] = (downA, downB) }
        return (dx, grads)
    }

    /// d(SwiGLU)/d(gate_up), interleaved like the input. With g = min(gate, limit),
    /// u = clamp(up, ±limit), s = σ(α g): out = (u + 1) g s, so
    /// d/dg = (u + 1) s (1 + α g (1 - s)) and d/du = g s; a clamped input gets no gradient
    /// (torch's clamp passes the gradient where min <= x <= max, bounds included).
    static func swigluBackward(_ gu: [Float], dOut: [Float], rows: Int, intermediate inter: Int, limit: Float) -> [Float] {
        var out = [Float](repeating: 0, count: rows * 2 * inter)
        gu.withUnsafeBufferPointer { gp in dOut.withUnsafeBufferPointer { dp in out.withUnsafeMutableBufferPointer { op in
            let g = Shared(gp.baseAddress!), dO = Shared(dp.baseAddress!), o = SharedMutable(op.baseAddress!)
            Parallel.chunks(rows, minChunk: 16) { range in  // each chunk owns rows `range` of out
                let e = UnsafeMutablePointer<Float>.allocate(capacity: inter)  // e^(-alpha * gate), one row
                defer { e.deallocate() }
                for r in range {
                    let src = g.base + r * 2 * inter, dst = o.base + r * 2 * inter, d0 = dO.base + r * inter
                    // the sigmoid exactly as the forward's `swiglu` computes it (one FastMath pass)
                    for j in 0..<inter { e[j] = -(min(src[2 * j], limit) * alpha) }
                    FastMath.exp(e, e, count: inter)
                    for j in 0..<inter {
                        let rawGate = src[2 * j], rawUp = src[2 * j + 1]
                        let gate = min(rawGate, limit), up = min(max(rawUp, -limit), limit)
                        let s = 1 / (1 + e[j])
                        let d = d0[j]
                        dst[2 * j] = rawGate <= limit ? d * (up + 1) * s * (1 + alpha * gate * (1 - s)) : 0
                        dst[2 * j + 1] = (rawUp >= -limit && rawUp <= limit) ? d * gate * s : 0
                    }
                }
            }
        } } }
        return out
    }
}

extension Attention {
    /// y [N, outFeatures] = x [N, inner] @ M^T where M = weights[offset...] is [outFeatures, inner]
    /// row-major (an expert matrix [in, out] used backwards).
    static func matmulTransposed(_ x: [Float], rows: Int, outFeatures: Int, weights: [Float], offset: Int, inner: Int) -> [Float] {
        var y = [Float](repeating: 0, count: rows * outFeatures)
        x.withUnsafeBufferPointer { xp in weights.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
            BLAS.sgemm(transB: true, m: rows, n: outFeatures, k: inner, a: xp.baseAddress!, lda: inner,
                       b: wp.baseAddress! + offset, ldb: inner, c: yp.baseAddress!, ldc: outFeatures)
        } } }
        return y
    }
}
