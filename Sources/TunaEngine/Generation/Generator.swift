import Foundation

/// One generated continuation.
public struct Generation: Sendable, Equatable {
    public enum Finish: String, Sendable, Codable { case stop, length }
    /// The new tokens, the stop token included when one ended the sequence (as transformers keeps it).
    public var tokens: [Int32]
    public var finish: Finish

    public init(tokens: [Int32], finish: Finish) {
        self.tokens = tokens
        self.finish = finish
    }
}

/// Autoregressive decoding with a KV cache on the native engine: a prefill forward over the
/// prompts (packed into rows; each prompt's positions start at 0, as transformers' `generate`
/// gives left-padded rows), then one token per live sequence per step, the
/// sequences batched through every matmul. Attention reads each sequence's own cache, with
/// the sliding windows and sinks of the training forward (`Attention.softmaxWithSink`).
/// LoRA, when given, is applied on the fly (no dropout); a merged checkpoint needs none.
///
/// The model should be `.resident`: a streaming model would dequantize every layer again at
/// every step.
public final class Generator: Sendable {
    public let model: GptOssModel
    let lora: [LayerLoRA]

    public init(model: GptOssModel, adapter: LoRAAdapter? = nil) {
        self.model = model
        lora = (0..<model.config.numHiddenLayers).map { model.layerLoRA(adapter, $0, maskSeed: nil) }
    }

    /// Continues every prompt by up to `maxNewTokens` tokens, a sequence ending early at its
    /// first token in `stopTokens` or when `isComplete(its new tokens)` says so (a stop text
    /// spelt in ordinary tokens). Prompts are decoded `batchSize` at a time (`onBatch` sees each
    /// batch's first index and results as it finishes); prompt i samples from stream i of the
    /// seed, so its tokens do not depend on the batch size.
    public func generate(prompts: [[Int32]], maxNewTokens: Int, stopTokens: Set<Int32> = [],
                         sampling: SamplingSettings = .greedy, batchSize: Int = .max,
                         isComplete: (([Int32]) -> Bool)? = nil,
                         onBatch: ((Int, [Generation]) -> Void)? = nil) throws -> [Generation] {
        if let problem = sampling.problem { throw EngineError.badInput(reason: problem) }
        guard maxNewTokens >= 0 else { throw EngineError.badInput(reason: "max new tokens must be >= 0") }
        guard batchSize >= 1 else { throw EngineError.badInput(reason: "batch size must be >= 1") }
        if let empty = prompts.firstIndex(where: \.isEmpty) { throw EngineError.badInput(reason: "prompt \(empty + 1) is empty") }
        var results: [Generation] = []
        for start in stride(from: 0, to: prompts.count, by: batchSize) {
            let batch = try generateBatch(Array(prompts[start..<min(prompts.count, start + min(batchSize, prompts.count))]),
                                          firstStream: start, maxNewTokens: maxNewTokens, stopTokens: stopTokens,
                                          sampling: sampling, isComplete: isComplete)
            onBatch?(start, batch)
            results += batch
        }
        return results
    }

    /// One batch: prefill, then a step per new token for the sequences still live.
    private func generateBatch(_ prompts: [[Int32]], firstStream: Int, maxNewTokens: Int, stopTokens: Set<Int32>,
                               sampling: SamplingSettings, isComplete: (([Int32]) -> Bool)?) throws -> [Generation] {
        var results = prompts.map { _ in Generation(tokens: [], finish: .length) }
        if maxNewTokens == 0 { return results }
        var caches = prompts.map { _ in KVCache(config: model.config) }
        var samplers = prompts.indices.map { Sampler(settings: sampling, sequence: firstStream + $0) }
        var logits = try prefill(prompts, caches: &caches)  // [B, V]
        var live = Array(prompts.indices)
        var positions = prompts.map { Int32($0.count) }
        let v = model.config.vocabSize
        for step in 0..<maxNewTokens {
            var next: [(sequence: Int, token: Int32)] = []
            logits.withUnsafeBufferPointer { lp in
                for (row, s) in live.enumerated() {
                    let token = samplers[s].next(UnsafeBufferPointer(rebasing: lp[(row * v)..<((row + 1) * v)]))
                    results[s].tokens.append(token)
                    if stopTokens.contains(token) || isComplete?(results[s].tokens) == true {
                        results[s].finish = .stop
                    } else {
                        next.append((s, token))
                    }
                }
            }
            live = next.map(\.sequence)
            if live.isEmpty || step == maxNewTokens - 1 { break }
            logits = try decode(next.map(\.token), sequences: live, positions: live.map { positions[$0] }, caches: &caches)
            for s in live { positions[s] += 1 }
        }
        return results
    }

    /// The forward over the whole prompts; fills the caches and returns the logits of each
    /// prompt's last token, [B, V]. The prompts are packed into as few rows as rows of
    /// `packedRow` tokens would need, balanced (longest first, first fit), so almost no matmul
    /// runs on padding (rows are right-padded to the longest); positions restart and attention
    /// stays inside each prompt (`Batch.packed`), and a row's attention work stays bounded by
    /// its length squared.
    func prefill(_ prompts: [[Int32]], caches: inout [KVCache]) throws -> [Float] {
        let total = prompts.reduce(0) { $0 + $1.count }, longest = prompts.map(\.count).max() ?? 0
        let rowCount = max(1, (total + Generator.packedRow - 1) / Generator.packedRow)
        let capacity = max(longest, (total + rowCount - 1) / rowCount)
        var rows: [[Int]] = [], filled: [Int] = []  // prompt indices per row
        for i in prompts.indices.sorted(by: { prompts[$0].count > prompts[$1].count }) {
            let prompt = prompts[i]
            if let r = filled.firstIndex(where: { $0 + prompt.count <= capacity }) {
                rows[r].append(i)
                filled[r] += prompt.count
            } else {
                rows.append([i])
                filled.append(prompt.count)
            }
        }
        let batch = try Batch.packed(rows.map { $0.map { prompts[$0] } })
        var start = [Int](repeating: 0, count: prompts.count)  // each prompt's first token in the flat [B*T] layout
        for (r, members) in rows.enumerated() {
            var offset = r * batch.length
            for i in members { start[i] = offset; offset += prompts[i].count }
        }
        let config = model.config
        var x = try model.embed(batch)
        for i in 0..<config.numHiddenLayers {
            let (out, saved) = DecoderLayer.forward(x, weights: try model.layerWeights(i), layerIndex: i, config: config,
                                                    rope: model.rope, batch: batch, lora: lora[i])
            let width = caches[0].width
            for (p, prompt) in prompts.enumerated() {
                caches[p].append(layer: i, k: saved.attention.k, v: saved.attention.v, offset: start[p] * width, tokens: prompt.count)
            }
            x = out
        }
        let c = config.hiddenSize
        var last = [Float](repeating: 0, count: prompts.count * c)
        for (p, prompt) in prompts.enumerated() {
            let from = (start[p] + prompt.count - 1) * c
            for j in 0..<c { last[p * c + j] = x[from + j] }
        }
        return head(last, rows: prompts.count)
    }

    /// Tokens per packed prefill row (unless one prompt is longer).
    static let packedRow = 1024

    /// One new token for each of `sequences` at `positions`: appends its k and v to the
    /// sequence's cache and returns the next-token logits, [B, V].
    func decode(_ tokens: [Int32], sequences: [Int], positions: [Int32], caches: inout [KVCache]) throws -> [Float] {
        let config = model.config, b = tokens.count
        let h = config.numAttentionHeads, kvh = config.kvHeads, d = config.resolvedHeadDim
        var x = try model.embed(Batch(tokens: tokens.map { [$0] }))  // [B, C]
        for i in 0..<config.numHiddenLayers {
            let w = try model.layerWeights(i), l = lora[i]
            let (normed, _) = RMSNorm.forward(x, weight: w.inputNorm, rows: b, eps: config.eps)
            let a = w.attention
            let (q, k, v) = Attention.project(normed, weights: a, config: config, rope: model.rope, positions: positions, lora: l)
            var context = [Float](repeating: 0, count: b * h * d)
            for (row, s) in sequences.enumerated() {
                caches[s].append(layer: i, k: k, v: v, offset: row * kvh * d, tokens: 1)
                Generator.attendOne(q: q, row: row, cache: caches[s], layer: i, sinks: a.sinks, heads: h, kvHeads: kvh,
                                    headDim: d, into: &context)
            }
            let attnOut = Attention.output(context, weights: a, config: config, lora: l)
            for j in 0..<x.count { x[j] += attnOut[j] }
            let (normed2, _) = RMSNorm.forward(x, weight: w.postAttentionNorm, rows: b, eps: config.eps)
            let (moeOut, _) = MoE.forward(normed2, weights: w.moe, config: config, tokens: b, lora: l)
            for j in 0..<x.count { x[j] += moeOut[j] }
        }
        return head(x, rows: b)
    }

    /// Final norm and lm_head over `rows` hidden states [rows, C] -> [rows, V].
    private func head(_ hidden: [Float], rows: Int) -> [Float] {
        let config = model.config
        let normed = RMSNorm.forward(hidden, weight: model.edges.finalNorm, rows: rows, eps: config.eps).y
        return BLAS.linear(normed, rows: rows, inFeatures: config.hiddenSize, weight: model.edges.lmHead, bias: nil,
                           outFeatures: config.vocabSize)
    }

    /// Attention of one new query row (all H heads) against its sequence's visible keys, the
    /// newest (its own) included: per kv head, the G query heads that share it are stacked
    /// into a [G, D] matrix, as `Attention.attend` stacks them.
    static func attendOne(q: [Float], row: Int, cache: KVCache, layer: Int, sinks: [Float], heads h: Int, kvHeads kvh: Int,
                          headDim d: Int, into context: inout [Float]) {
        let group = h / kvh, (offset, keys) = cache.visible(layer: layer)
        let scale = 1 / Float(d).squareRoot()
        var scores = [Float](repeating: 0, count: group * keys)
        var out = [Float](repeating: 0, count: group * d)
        let allowed = [Bool](repeating: true, count: keys)
        q.withUnsafeBufferPointer { qp in cache.keys[layer].withUnsafeBufferPointer { kp in
        cache.values[layer].withUnsafeBufferPointer { vp in scores.withUnsafeMutableBufferPointer { sp in
        out.withUnsafeMutableBufferPointer { op in context.withUnsafeMutableBufferPointer { cp in
            guard let qb = qp.baseAddress, let kb = kp.baseAddress, let vb = vp.baseAddress, let sb = sp.baseAddress,
                  let ob = op.baseAddress, let cb = cp.baseAddress else { return }
            for kvHead in 0..<kvh {
                let firstHead = kvHead * group
                let qView = qb + (row * h + firstHead) * d  // [G, D], contiguous: the group's heads are adjacent
                let kView = kb + offset + kvHead * d, vView = vb + offset + kvHead * d  // [keys, D], stride KVH*D
                BLAS.sgemm(transB: true, m: group, n: keys, k: d, alpha: scale, a: qView, lda: d, b: kView, ldb: kvh * d,
                           c: sb, ldc: keys)
                Attention.softmaxWithSink(sb, allowed: allowed, rowsPerHead: 1, heads: group, keys: keys,
                                          sinks: Array(sinks[firstHead..<(firstHead + group)]))
                BLAS.sgemm(m: group, n: d, k: keys, a: sb, lda: keys, b: vView, ldb: kvh * d, c: ob, ldc: d)
                (cb + (row * h + firstHead) * d).update(from: ob, count: group * d)
            }
        } } } } } }
    }
}
