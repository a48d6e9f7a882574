import Foundation

/// What the MoE forward keeps for a backward pass.
public struct MoEActivations: Sendable {
    public var input: [Float]          // [N, C]  normed hidden states
    public var routerLogits: [Float]   // [N, E]
    public var topExperts: [Int32]     // [N, K]  chosen experts, highest logit first
    public var topWeights: [Float]     // [N, K]  softmax over the chosen logits
    /// Per expert, for the tokens routed to it (token order): x W_gu + b (+ LoRA) [Ne, 2I] and
    /// the expert's output before the routing weight [Ne, C]. Kept because the backward needs
    /// both (SwiGLU's derivative, the routing weights' gradient) and recomputing them would cost
    /// two of the backward's matmuls again.
    var gateUp: [[Float]] = []
    var expertOutput: [[Float]] = []
}

/// GptOssMLP: GptOssTopKRouter (linear + bias, top-k, softmax over the k chosen logits) and
/// GptOssExperts (per expert: x @ gate_up + b, clamped SwiGLU on interleaved columns,
/// @ down + b, scaled by the routing weight, summed). Experts run batched: the tokens routed
/// to expert e are gathered into one [Ne, C] matrix and go through two sgemms.
enum MoE {
    static let alpha: Float = 1.702

    /// `expertMask` (true = kept) removes experts by setting their router logits to -inf before
    /// the top-k: since the softmax runs over the chosen k only, that is exactly the model with
    /// those experts cut out (pruning's cheap evaluation). `saved.routerLogits` stays unmasked.
    static func forward(_ x: [Float], weights w: MoEWeights, config: GptOssConfig, tokens n: Int, lora: LayerLoRA = .empty,
                        expertMask: [Bool]? = nil) -> (out: [Float], saved: MoEActivations) {
        let c = config.hiddenSize, e = config.numLocalExperts, k = config.topK, inter = config.intermediateSize
        let logits = BLAS.linear(x, rows: n, inFeatures: c, weight: w.routerWeight, bias: w.routerBias, outFeatures: e)  // [N, E]
        var routerInput = logits
        if let expertMask {
            for t in 0..<n { for j in 0..<e where !expertMask[j] { routerInput[t * e + j] = -.infinity } }
        }
        let (experts, weights) = route(routerInput, tokens: n, experts: e, topK: k)

        let routed = routing(experts: experts, weights: weights, tokens: n, experts: e, topK: k)
        var keptGateUp = [[Float]](repeating: [], count: e), keptOutput = [[Float]](repeating: [], count: e)

        var out = [Float](repeating: 0, count: n * c)  // [N, C]
        for expert in 0..<e where !routed[expert].isEmpty {
            let list = routed[expert], ne = list.count
            let xe = gather(x, rows: list.map(\.token), width: c)                           // [Ne, C]
            var gateUp = expertMatmul(xe, rows: ne, weights: w.gateUp, bias: w.gateUpBias, expert: expert,
                                      inFeatures: c, outFeatures: 2 * inter)              // [Ne, 2I]
            lora.gateUp?.addForward(xe, rows: ne, expert: expert, into: &gateUp)
            let act = swiglu(gateUp, rows: ne, intermediate: inter, limit: config.limit)  // [Ne, I]
            var y = expertMatmul(act, rows: ne, weights: w.down, bias: w.downBias, expert: expert,
                                 inFeatures: inter, outFeatures: c)                      // [Ne, C]
            lora.down?.addForward(act, rows: ne, expert: expert, into: &y)
            keptGateUp[expert] = gateUp
            keptOutput[expert] = y
            // out[token] += weight * y[r]  (transformers' index_add_ of the weighted output)
            y.withUnsafeBufferPointer { yp in out.withUnsafeMutableBufferPointer { op in
                guard let yb = yp.baseAddress, let ob = op.baseAddress else { return }
                let src = Shared(yb), dst = SharedMutable(ob)
                // a token appears at most once per expert, so chunks of `list` write disjoint rows
                Parallel.chunks(ne, minChunk: 16) { range in
                    for r in range {
                        let item = list[r]
                        for i in 0..<c { dst[item.token * c + i] += src[r * c + i] * item.weight }
                    }
                }
            } }
        }
        return (out, MoEActivations(input: x, routerLogits: logits, topExperts: experts, topWeights: weights,
                                    gateUp: keptGateUp, expertOutput: keptOutput))
    }

    /// (token, top-k slot, weight) per expert, in token order like transformers' where().
    static func routing(experts: [Int32], weights: [Float], tokens n: Int, experts e: Int, topK k: Int)
        -> [[(token: Int, slot: Int, weight: Float)]] {
        var routed = [[(token: Int, slot: Int, weight: Float)]](repeating: [], count: e)
        for t in 0..<n { for j in 0..<k { routed[Int(experts[t * k + j])].append((t, j, weights[t * k + j])) } }
        return routed
    }

    /// torch.topk (largest first; ties keep the lower index) then softmax over the k values.
    static func route(_ logits: [Float], tokens n: Int, experts e: Int, topK k: Int) -> ([Int32], [Float]) {
        var idx = [Int32](repeating: 0, count: n * k), wts = [Float](repeating: 0, count: n * k)
        for t in 0..<n {
            let row = Array(logits[(t * e)..<((t + 1) * e)])
            let order = (0..<e).sorted { row[$0] != row[$1] ? row[$0] > row[$1] : $0 < $1 }
            let top = order.prefix(k)
            let m = row[top[0]]
            var sum: Float = 0
            for (j, expert) in top.enumerated() {
                let ex = Foundation.exp(row[expert] - m)
                idx[t * k + j] = Int32(expert); wts[t * k + j] = ex; sum += ex
            }
            for j in 0..<k { wts[t * k + j] /= sum }
        }
        return (idx, wts)
    }

    /// Rows of x [N, width] picked by index -> [rows.count, width].
    static func gather(_ x: [Float], rows: [Int], width: Int) -> [Float] {
        var out = [Float](repeating: 0, count: rows.count * width)
        x.withUnsafeBufferPointer { xp in out.withUnsafeMutableBufferPointer { op in
            guard let xb = xp.baseAddress, let ob = op.baseAddress else { return }
            for (r, src) in rows.enumerated() { (ob + r * width).update(from: xb + src * width, count: width) }
        } }
        return out
    }

    /// y[Ne, out] = x[Ne, in] @ W[expert] ([in, out]) + b[expert].
    static func expertMatmul(_ x: [Float], rows: Int, weights: [Float], bias: [Float], expert: Int,
                             inFeatures: Int, outFeatures: Int) -> [Float] {
        var y = [Float](repeating: 0, count: rows * outFeatures)
        let b = expert * outFeatures
        for r in 0..<rows { for o in 0..<outFeatures { y[r * outFeatures + o] = bias[b + o] } }
        x.withUnsafeBufferPointer { xp in weights.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
            guard let xb = xp.baseAddress, let wb = wp.baseAddress, let yb = yp.baseAddress else { return }
            BLAS.sgemm(m: rows, n: outFeatures, k: inFeatures, a: xb, lda: inFeatures,
                       b: wb + expert * inFeatures * outFeatures, ldb: outFeatures, beta: 1, c: yb, ldc: outFeatures)
        } } }
        return y
    }

    /// gate = gu[:, 0::2] clamped above at limit, up = gu[:, 1::2] clamped to +-limit,
    /// out = (up + 1) * gate * sigmoid(alpha * gate). [Ne, 2I] -> [Ne, I]
    /// Per row: the sigmoid arguments go through FastMath.exp in one vector pass; the rest are
    /// plain loops LLVM vectorizes.
    static func swiglu(_ gu: [Float], rows: Int, intermediate inter: Int, limit: Float) -> [Float] {
        var out = [Float](repeating: 0, count: rows * inter)
        gu.withUnsafeBufferPointer { gp in out.withUnsafeMutableBufferPointer { op in
            guard let gb = gp.baseAddress, let ob = op.baseAddress else { return }
            let g = Shared(gb), o = SharedMutable(ob)
            Parallel.chunks(rows, minChunk: 16) { range in  // each chunk owns rows `range` of out
                let e = UnsafeMutablePointer<Float>.allocate(capacity: inter)  // e^(-alpha * gate), one row
                defer { e.deallocate() }
                for r in range {
                    let src = g.base + r * 2 * inter, dst = o.base + r * inter
                    for j in 0..<inter { e[j] = -(min(src[2 * j], limit) * alpha) }
                    FastMath.exp(e, e, count: inter)
                    for j in 0..<inter {
                        let gate = min(src[2 * j], limit)
                        let up = min(max(src[2 * j + 1], -limit), limit)
                        dst[j] = (up + 1) * (gate * (1 / (1 + e[j])))  // gate * sigmoid(alpha * gate)
                    }
                }
            }
        } }
        return out
    }
}
