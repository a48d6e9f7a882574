import Foundation

/// Logits [B, T, V], row-major.
public struct Logits: Sendable {
    public let batchSize: Int, length: Int, vocabSize: Int
    public var values: [Float]

    /// The V logits of token t in row b.
    public subscript(b: Int, t: Int) -> ArraySlice<Float> {
        let o = (b * length + t) * vocabSize
        return values[o..<(o + vocabSize)]
    }
}

/// GptOssForCausalLM's forward in fp32 on OpenBLAS.
///
/// `.resident` converts every layer to fp32 once (fast repeated forwards); `.streaming` keeps
/// only the memory-mapped checkpoint and converts/dequantizes one layer at a time during each
/// forward, freeing it before the next, so peak memory is ~one fp32 layer plus activations.
public final class GptOssModel: Sendable {
    public enum Residency: Sendable { case resident, streaming }

    public let config: GptOssConfig
    public let checkpoint: GptOssCheckpoint
    public let residency: Residency
    let rope: Rope
    let edges: EdgeWeights
    let layers: [LayerWeights]  // empty when streaming

    public convenience init(checkpoint: GptOssCheckpoint, residency: Residency = .resident) throws {
        try self.init(checkpoint: checkpoint, config: checkpoint.config, residency: residency)
    }

    /// `config` may differ from the checkpoint's in settings that do not change tensor shapes
    /// (the tests use this to show each setting matters to the goldens).
    init(checkpoint: GptOssCheckpoint, config: GptOssConfig, residency: Residency) throws {
        try config.validate(file: checkpoint.directory.appendingPathComponent("config.json").path)
        self.checkpoint = checkpoint
        self.residency = residency
        self.config = config
        rope = Rope(config: config)
        edges = try checkpoint.edgeWeights()
        layers = residency == .resident ? try (0..<config.numHiddenLayers).map { try checkpoint.layer($0) } : []
    }

    public convenience init(directory: URL, residency: Residency = .resident) throws {
        try self.init(checkpoint: GptOssCheckpoint(directory: directory), residency: residency)
    }

    func layerWeights(_ i: Int) throws -> LayerWeights {
        residency == .resident ? layers[i] : try checkpoint.layer(i)
    }

    /// Logits for every position, with `adapter`'s LoRA applied when given (no dropout).
    /// `keep` collects each layer's activations.
    /// `expertMasks[layer][expert]` (true = kept) evaluates the model with experts removed (`MoE.forward`).
    public func forward(_ batch: Batch, adapter: LoRAAdapter? = nil, expertMasks: [[Bool]]? = nil,
                        keep: ((Int, LayerActivations) -> Void)? = nil) throws -> Logits {
        let n = batch.batchSize * batch.length
        let hidden = try finalHidden(batch, adapter: adapter, expertMasks: expertMasks, keep: keep)  // [N, C]
        let logits = BLAS.linear(hidden, rows: n, inFeatures: config.hiddenSize, weight: edges.lmHead, bias: nil,
                                 outFeatures: config.vocabSize)  // [N, V]
        return Logits(batchSize: batch.batchSize, length: batch.length, vocabSize: config.vocabSize, values: logits)
    }

    /// Embeddings -> decoder layers -> final norm: the lm_head's input, [N, C].
    func finalHidden(_ batch: Batch, adapter: LoRAAdapter? = nil, expertMasks: [[Bool]]? = nil,
                     keep: ((Int, LayerActivations) -> Void)?) throws -> [Float] {
        if let expertMasks {
            guard expertMasks.count == config.numHiddenLayers, expertMasks.allSatisfy({ $0.count == config.numLocalExperts }) else {
                throw EngineError.badInput(reason: "expert masks must be [\(config.numHiddenLayers)][\(config.numLocalExperts)]")
            }
            for (l, m) in expertMasks.enumerated() where m.filter({ $0 }).count < config.topK {
                throw EngineError.badInput(reason: "layer \(l) keeps \(m.filter { $0 }.count) experts, fewer than experts per token (\(config.topK))")
            }
        }
        var x = try embed(batch)
        for i in 0..<config.numHiddenLayers {
            let weights = try layerWeights(i)  // streaming: dequantized here, freed at the end of the iteration
            let (out, saved) = DecoderLayer.forward(x, weights: weights, layerIndex: i, config: config, rope: rope, batch: batch,
                                                    lora: layerLoRA(adapter, i, maskSeed: nil), expertMask: expertMasks?[i])
            keep?(i, saved)
            x = out
        }
        return RMSNorm.forward(x, weight: edges.finalNorm, rows: batch.batchSize * batch.length, eps: config.eps).y
    }

    /// Token embeddings [N, C].
    func embed(_ batch: Batch) throws -> [Float] {
        let c = config.hiddenSize, v = config.vocabSize
        var x = [Float](repeating: 0, count: batch.tokens.count * c)  // [N, C]
        for (i, token) in batch.tokens.enumerated() {
            guard token >= 0, Int(token) < v else { throw EngineError.badInput(reason: "token \(token) at \(i) outside vocab \(v)") }
            let row = Int(token) * c
            for j in 0..<c { x[i * c + j] = edges.embedding[row + j] }
        }
        return x
    }

    func layerLoRA(_ adapter: LoRAAdapter?, _ layer: Int, maskSeed: UInt64?) -> LayerLoRA {
        guard let adapter else { return .empty }
        return LayerLoRA(adapter: adapter, layer: layer, experts: config.numLocalExperts, maskSeed: maskSeed)
    }


    /// Mean next-token cross-entropy over the batch's labels, as `CrossEntropy.mean(forward(b))`
    /// computes it, without materializing [N, V] logits: only positions whose (shifted) label is
    /// scored go through the lm_head, `chunkRows` rows at a time ([256, V] is ~200 MB at
    /// gpt-oss's V = 201088). This is what evaluation on the real vocabulary can afford.
    public func loss(_ batch: Batch, adapter: LoRAAdapter? = nil, expertMasks: [[Bool]]? = nil,
                     chunkRows: Int = 256) throws -> (loss: Double, tokens: Int) {
        guard let labels = batch.labels else { throw EngineError.badInput(reason: "batch has no labels") }
        let t = batch.length, c = config.hiddenSize, v = config.vocabSize
        let scored = try CrossEntropy.scoredPositions(labels: labels, batchSize: batch.batchSize, length: t, vocab: v)
        if scored.isEmpty { return (.nan, 0) }
        let hidden = try finalHidden(batch, adapter: adapter, expertMasks: expertMasks, keep: nil)  // [N, C]
        var total = 0.0
        for start in stride(from: 0, to: scored.count, by: max(1, chunkRows)) {
            let part = scored[start..<min(start + max(1, chunkRows), scored.count)]
            var rows = [Float](repeating: 0, count: part.count * c)  // [chunk, C]
            for (r, item) in part.enumerated() {
                for j in 0..<c { rows[r * c + j] = hidden[item.position * c + j] }
            }
            let logits = BLAS.linear(rows, rows: part.count, inFeatures: c, weight: edges.lmHead, bias: nil, outFeatures: v)
            for (r, item) in part.enumerated() {
                total += CrossEntropy.tokenLoss(logits[(r * v)..<((r + 1) * v)], target: item.target)
            }
        }
        return (total / Double(scored.count), scored.count)
    }
}
