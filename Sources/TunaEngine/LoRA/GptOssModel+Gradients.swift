import Foundation

/// LoRA gradients of gpt-oss: one forward that keeps what the backward needs, the loss head
/// (final norm, lm_head, cross-entropy) in row chunks, then the decoder layers in reverse down
/// to the lowest layer that holds LoRA tensors.
extension GptOssModel {
    public struct GradientResult: Sendable {
        /// Mean cross-entropy over this batch's scored tokens (as transformers' loss).
        public var loss: Double
        public var tokens: Int
        /// d(lossScale · Σ token losses)/d(tensor), keyed like `LoRAAdapter.tensors`.
        public var gradients: [String: [Float]]
    }

    /// - Parameters:
    ///   - recompute: gradient checkpointing: keep only each layer's input during the forward and
    ///     recompute the layer's activations right before its backward (one more forward, far less memory).
    ///   - dropoutSeed: draws LoRA dropout masks (training); nil disables dropout.
    ///   - lossScale: what each token's loss is multiplied by; nil means 1/tokens (the mean). A
    ///     trainer accumulating micro-batches passes 1/(tokens of the whole step), so the summed
    ///     gradients are exactly those of the step's token-weighted mean loss.
    public func lossAndGradients(_ batch: Batch, adapter: LoRAAdapter, recompute: Bool = false, dropoutSeed: UInt64? = nil,
                                 lossScale: Double? = nil, chunkRows: Int = 256) throws -> GradientResult {
        guard let labels = batch.labels else { throw EngineError.badInput(reason: "batch has no labels") }
        let n = batch.batchSize * batch.length, c = config.hiddenSize, v = config.vocabSize
        let scored = try CrossEntropy.scoredPositions(labels: labels, batchSize: batch.batchSize, length: batch.length, vocab: v)
        var gradients = adapter.zeros()
        if scored.isEmpty { return GradientResult(loss: .nan, tokens: 0, gradients: gradients) }
        let lowest = adapter.lowestLayer ?? config.numHiddenLayers
        let scale = Float(lossScale ?? 1 / Double(scored.count))

        // forward
        var x = try embed(batch)
        var inputs = [[Float]](repeating: [], count: config.numHiddenLayers)
        var saved = [LayerActivations?](repeating: nil, count: config.numHiddenLayers)
        for i in 0..<config.numHiddenLayers {
            let (out, s) = DecoderLayer.forward(x, weights: try layerWeights(i), layerIndex: i, config: config, rope: rope,
                                                batch: batch, lora: layerLoRA(adapter, i, maskSeed: dropoutSeed))
            if i >= lowest { if recompute { inputs[i] = x } else { saved[i] = s } }
            x = out
        }
        let (hidden, finalRstd) = RMSNorm.forward(x, weight: edges.finalNorm, rows: n, eps: config.eps)

        // loss head: softmax(logits) - onehot, scaled, back through lm_head; [chunk, V] at a time
        var dHidden = [Float](repeating: 0, count: n * c)
        var total = 0.0
        let step = max(1, chunkRows)
        for start in stride(from: 0, to: scored.count, by: step) {
            let part = scored[start..<min(start + step, scored.count)]
            var rows = [Float](repeating: 0, count: part.count * c)
            for (r, item) in part.enumerated() { for j in 0..<c { rows[r * c + j] = hidden[item.position * c + j] } }
            var logits = BLAS.linear(rows, rows: part.count, inFeatures: c, weight: edges.lmHead, bias: nil, outFeatures: v)
            // rows are independent: computed concurrently, losses summed in row order as before
            var rowLoss = [Double](repeating: 0, count: part.count)
            let targets = part.map { Int($0.target) }
            logits.withUnsafeMutableBufferPointer { lp in rowLoss.withUnsafeMutableBufferPointer { rp in
                let l = SharedMutable(lp.baseAddress!), out = SharedMutable(rp.baseAddress!)
                Parallel.chunks(part.count, minChunk: max(1, 65536 / max(v, 1))) { range in  // disjoint rows
                    for r in range {
                        out[r] = CrossEntropy.softmaxGradient(l.base + r * v, vocab: v, target: targets[r], scale: scale)
                    }
                }
            } }
            for r in 0..<part.count { total += rowLoss[r] }
            var dRows = [Float](repeating: 0, count: part.count * c)
            logits.withUnsafeBufferPointer { lp in edges.lmHead.withUnsafeBufferPointer { wp in dRows.withUnsafeMutableBufferPointer { dp in
                BLAS.sgemm(m: part.count, n: c, k: v, a: lp.baseAddress!, lda: v, b: wp.baseAddress!, ldb: c, c: dp.baseAddress!, ldc: c)
            } } }
            for (r, item) in part.enumerated() { for j in 0..<c { dHidden[item.position * c + j] += dRows[r * c + j] } }
        }
        var dx = RMSNorm.backward(dHidden, x: x, rstd: finalRstd, weight: edges.finalNorm, rows: n)

        // decoder layers, top down
        for i in stride(from: config.numHiddenLayers - 1, through: lowest, by: -1) {
            let weights = try layerWeights(i)
            let lora = layerLoRA(adapter, i, maskSeed: dropoutSeed)
            let activations: LayerActivations
            if recompute {
                activations = DecoderLayer.forward(inputs[i], weights: weights, layerIndex: i, config: config, rope: rope,
                                                   batch: batch, lora: lora).saved
                inputs[i] = []
            } else {
                activations = saved[i]!
                saved[i] = nil  // free as we go
            }
            let (dIn, grads) = DecoderLayer.backward(dx, saved: activations, weights: weights, layerIndex: i, config: config,
                                                     rope: rope, batch: batch, lora: lora, needInput: i > lowest)
            for (target, g) in grads {
                guard let names = adapter.names(layer: i, module: target) ?? adapter.names(layer: i, parameter: target) else { continue }
                gradients[names.a] = g.dA
                gradients[names.b] = g.dB
            }
            guard let dIn else { break }
            dx = dIn
        }
        return GradientResult(loss: total / Double(scored.count), tokens: scored.count, gradients: gradients)
    }
}

extension CrossEntropy {
    /// One row of V logits becomes, in place, scale · (softmax - onehot(target)); returns the
    /// token's loss logsumexp - logit[target] (Double, like `tokenLoss`).
    /// One vectorized pass of e^(x - max) (FastMath, within 1 ulp of expf) whose values are kept
    /// and summed in Double: the loss is logsumexp to ~1e-8 relative and each probability is
    /// within a few ulp of the exact one (two scalar Double exp passes over V cost 4-6x more).
    static func softmaxGradient(_ row: UnsafeMutablePointer<Float>, vocab v: Int, target: Int, scale: Float) -> Double {
        var m = -Float.infinity
        for j in 0..<v { m = max(m, row[j]) }
        let targetLogit = Double(row[target])
        for j in 0..<v { row[j] -= m }
        FastMath.exp(row, row, count: v)  // e_j = e^(x_j - m) in (0, 1]
        var sum = 0.0
        for j in 0..<v { sum += Double(row[j]) }
        let loss = Double(m) + Foundation.log(sum) - targetLogit
        let factor = Float(Double(scale) / sum)
        for j in 0..<v { row[j] *= factor }
        row[target] -= scale
        return loss
    }
}
