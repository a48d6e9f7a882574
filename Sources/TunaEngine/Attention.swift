import Foundation

/// What attention's forward keeps for a backward pass (probabilities are not kept: they are
/// T x T per head and cheap to recompute from q and k).
public struct AttentionActivations: Sendable {
    public var input: [Float]    // [N, C]  the normed hidden states fed to q/k/v
    public var q: [Float]        // [N, H*D]   after RoPE
    public var k: [Float]        // [N, KVH*D] after RoPE
    public var v: [Float]        // [N, KVH*D]
    public var context: [Float]  // [N, H*D]   softmax(qk^T) v, the input of o_proj
}

/// GptOssAttention with eager_attention_forward: GQA (query head h reads kv head h / (H/KVH)),
/// scores scaled by D^-0.5, causal (+ sliding window, padding and packing segments), and a
/// learned per-head sink logit that joins the softmax denominator and is then dropped.
/// N = B*T tokens laid out [B, T]; each (row, head) is two sgemms over strided views.
enum Attention {
    static func forward(_ x: [Float], weights w: AttentionWeights, config: GptOssConfig, rope: Rope,
                        batch: Batch, window: Int?, lora: LayerLoRA = .empty) -> (out: [Float], saved: AttentionActivations) {
        let (q, k, v) = project(x, weights: w, config: config, rope: rope, positions: batch.positions, lora: lora)
        let context = attend(q: q, k: k, v: v, sinks: w.sinks, heads: config.numAttentionHeads, kvHeads: config.kvHeads,
                             headDim: config.resolvedHeadDim, batch: batch, window: window)
        let out = output(context, weights: w, config: config, lora: lora)
        return (out, AttentionActivations(input: x, q: q, k: k, v: v, context: context))
    }

    /// q [N, H*D] and k [N, KVH*D] after RoPE at `positions` ([N]), and v [N, KVH*D], each with its
    /// LoRA: the projections of `forward`, and of a decode step (`Generator`).
    static func project(_ x: [Float], weights w: AttentionWeights, config: GptOssConfig, rope: Rope, positions: [Int32],
                        lora: LayerLoRA) -> (q: [Float], k: [Float], v: [Float]) {
        let n = positions.count, c = config.hiddenSize
        let h = config.numAttentionHeads, kvh = config.kvHeads, d = config.resolvedHeadDim
        var q = BLAS.linear(x, rows: n, inFeatures: c, weight: w.qWeight, bias: w.qBias, outFeatures: h * d)     // [N, H*D]
        var k = BLAS.linear(x, rows: n, inFeatures: c, weight: w.kWeight, bias: w.kBias, outFeatures: kvh * d)   // [N, KVH*D]
        var v = BLAS.linear(x, rows: n, inFeatures: c, weight: w.vWeight, bias: w.vBias, outFeatures: kvh * d)   // [N, KVH*D]
        lora.attention["q_proj"]?.addForward(lora.dropped(x, module: "q_proj"), rows: n, into: &q)
        lora.attention["k_proj"]?.addForward(lora.dropped(x, module: "k_proj"), rows: n, into: &k)
        lora.attention["v_proj"]?.addForward(lora.dropped(x, module: "v_proj"), rows: n, into: &v)
        rope.apply(&q, heads: h, positions: positions)
        rope.apply(&k, heads: kvh, positions: positions)
        return (q, k, v)
    }

    /// o_proj of the attention's context [N, H*D] with its LoRA: [N, C].
    static func output(_ context: [Float], weights w: AttentionWeights, config: GptOssConfig, lora: LayerLoRA) -> [Float] {
        let h = config.numAttentionHeads, d = config.resolvedHeadDim, n = context.count / (h * d), c = config.hiddenSize
        var out = BLAS.linear(context, rows: n, inFeatures: h * d, weight: w.oWeight, bias: w.oBias, outFeatures: c)  // [N, C]
        lora.attention["o_proj"]?.addForward(lora.dropped(context, module: "o_proj"), rows: n, into: &out)
        return out
    }

    /// Query rows per block. Each block only multiplies against the keys it can see (causal,
    /// and for sliding layers the last `window` keys), so causal attention does about half the
    /// square's work and sliding attention O(T * window).
    static let queryBlock = 128

    /// softmax([q k^T * D^-0.5 | sink]) without the sink column, times v. Returns [N, H*D].
    /// The G = H/KVH query heads that share a kv head are stacked into one [G*rows, D] matrix
    /// per block, so each (block, kv head) is two sgemms with G times the rows.
    static func attend(q: [Float], k: [Float], v: [Float], sinks: [Float], heads h: Int, kvHeads kvh: Int, headDim d: Int,
                       batch: Batch, window: Int?, block: Int = queryBlock) -> [Float] {
        let t = batch.length, group = h / kvh
        let scale = 1 / Float(d).squareRoot()
        var context = [Float](repeating: 0, count: batch.batchSize * t * h * d)  // [N, H*D]
        let bq = max(1, min(block, t))
        var stackedQ = [Float](repeating: 0, count: group * bq * d)    // [G*rows, D] head-major
        var stackedOut = [Float](repeating: 0, count: group * bq * d)  // [G*rows, D]
        var scores = [Float](repeating: 0, count: group * bq * t)      // [G*rows, keys]
        var allowed = [Bool](repeating: false, count: bq * t)          // [rows, keys], shared by all heads
        q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
        context.withUnsafeMutableBufferPointer { cp in scores.withUnsafeMutableBufferPointer { sp in
        stackedQ.withUnsafeMutableBufferPointer { sqp in stackedOut.withUnsafeMutableBufferPointer { sop in
            guard let qb = qp.baseAddress, let kb = kp.baseAddress, let vb = vp.baseAddress, let cb = cp.baseAddress,
                  let sb = sp.baseAddress, let sq = sqp.baseAddress, let so = sop.baseAddress else { return }
            forEachTile(batch: batch, block: bq, window: window, allowed: &allowed) { tile, allowed in
                let (row, i0, rows, j0, keys) = (tile.row, tile.i0, tile.rows, tile.j0, tile.keys)
                for kvHead in 0..<kvh {
                    let firstHead = kvHead * group
                    // stack: sq[(g*rows + i)*D ..] = q[token i0+i, head firstHead+g]
                    for g in 0..<group {
                        for i in 0..<rows {
                            (sq + (g * rows + i) * d).update(from: qb + ((row * t + i0 + i) * h + firstHead + g) * d, count: d)
                        }
                    }
                    let kView = kb + (row * t + j0) * kvh * d + kvHead * d  // [keys, D], stride KVH*D
                    let vView = vb + (row * t + j0) * kvh * d + kvHead * d  // [keys, D], stride KVH*D
                    // scores [G*rows, keys] = scale * Q K^T
                    BLAS.sgemm(transB: true, m: group * rows, n: keys, k: d, alpha: scale, a: sq, lda: d,
                               b: kView, ldb: kvh * d, c: sb, ldc: keys)
                    softmaxWithSink(sb, allowed: allowed, rowsPerHead: rows, heads: group, keys: keys,
                                    sinks: Array(sinks[firstHead..<(firstHead + group)]))
                    // out [G*rows, D] = P [G*rows, keys] @ V [keys, D]
                    BLAS.sgemm(m: group * rows, n: d, k: keys, a: sb, lda: keys, b: vView, ldb: kvh * d, c: so, ldc: d)
                    for g in 0..<group {
                        for i in 0..<rows {
                            (cb + ((row * t + i0 + i) * h + firstHead + g) * d).update(from: so + (g * rows + i) * d, count: d)
                        }
                    }
                }
            }
        } } } } } } }
        return context
    }

    /// One block of queries [i0, i0 + rows) of batch row `row`, and the keys [j0, j0 + keys)
    /// any of them may see (causal end i0 + rows, window start i0 - W + 1).
    struct Tile { let row: Int, i0: Int, rows: Int, j0: Int, keys: Int }

    /// Walks the tiles of the forward and the backward pass in the same order, filling
    /// `allowed` [rows, keys] (which key each query may see; shared by all heads) for each.
    static func forEachTile(batch: Batch, block bq: Int, window: Int?, allowed: inout [Bool],
                            _ body: (Tile, [Bool]) -> Void) {
        let t = batch.length
        for row in 0..<batch.batchSize {
            for i0 in stride(from: 0, to: t, by: bq) {
                let i1 = min(i0 + bq, t), rows = i1 - i0
                let j0 = window.map { max(0, i0 - $0 + 1) } ?? 0
                let keys = i1 - j0
                for i in 0..<rows {
                    for j in 0..<keys { allowed[i * keys + j] = batch.allowed(row: row, query: i0 + i, key: j0 + j, window: window) }
                }
                body(Tile(row: row, i0: i0, rows: rows, j0: j0, keys: keys), allowed)
            }
        }
    }

    /// In place over s [heads*rowsPerHead, keys] (head-major): p_j = exp(s_j - m) /
    /// (exp(sink - m) + sum_allowed exp(s_k - m)), 0 where not allowed. m includes the sink, as
    /// transformers takes the max over [scores | sink]; the sink's own probability is dropped.
    static func softmaxWithSink(_ s: UnsafeMutablePointer<Float>, allowed: [Bool], rowsPerHead: Int, heads: Int, keys: Int,
                                sinks: [Float]) {
        allowed.withUnsafeBufferPointer { ap in
            guard let ab = ap.baseAddress else { return }
            let a = Shared(ab), p = SharedMutable(s)
            Parallel.chunks(heads * rowsPerHead, minChunk: max(1, 8192 / max(keys, 1))) { range in  // disjoint rows
                for i in range {
                    let row = i * keys, pr = p.base + row
                    let mask = (i % rowsPerHead) * keys, sink = sinks[i / rowsPerHead]
                    var m = sink
                    for j in 0..<keys where a[mask + j] { m = max(m, pr[j]) }
                    for j in 0..<keys { pr[j] -= m }
                    FastMath.exp(pr, pr, count: keys)
                    var denom = Foundation.exp(sink - m)
                    for j in 0..<keys {
                        // select, not multiply: a masked future key may have saturated high
                        let e = a[mask + j] ? pr[j] : 0  // 0: future, outside the window, padding, other sequence
                        pr[j] = e
                        denom += e
                    }
                    let inv = 1 / denom
                    for j in 0..<keys { pr[j] *= inv }
                }
            }
        }
    }
}
