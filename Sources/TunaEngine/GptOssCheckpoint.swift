import Foundation

/// A gpt-oss checkpoint directory: config.json plus safetensors (single file or sharded).
/// Tensors stay memory-mapped; `layer(_:)` converts one decoder layer to fp32 on demand
/// (BF16 widened, MXFP4 experts dequantized), so callers can stream layers through a model
/// whose fp32 size exceeds RAM.
public final class GptOssCheckpoint: Sendable {
    public let directory: URL
    public let config: GptOssConfig
    public let store: TensorStore

    public init(directory: URL) throws {
        self.directory = directory
        config = try GptOssConfig.load(from: directory.appendingPathComponent("config.json"))
        store = try TensorStore(directory: directory)
    }

    private func floats(_ name: String, _ shape: [Int]) throws -> [Float] { try store.floats(name, shape: shape) }

    private func optionalFloats(_ name: String, _ shape: [Int], present: Bool) throws -> [Float]? {
        present ? try floats(name, shape) : nil
    }

    public func edgeWeights() throws -> EdgeWeights {
        let c = config.hiddenSize, v = config.vocabSize
        let embedding = try floats("model.embed_tokens.weight", [v, c])
        let lmHead: [Float]
        if store.contains("lm_head.weight") || !(config.tieWordEmbeddings ?? false) {
            lmHead = try floats("lm_head.weight", [v, c])
        } else {
            lmHead = embedding
        }
        return EdgeWeights(embedding: embedding, finalNorm: try floats("model.norm.weight", [c]), lmHead: lmHead)
    }

    /// Decoder layer `index` in fp32. Allocates ~ (attention + E*3*C*I) floats; drop it to free.
    public func layer(_ index: Int) throws -> LayerWeights {
        let cfg = config
        let c = cfg.hiddenSize, h = cfg.numAttentionHeads, kvh = cfg.kvHeads, d = cfg.resolvedHeadDim
        let p = "model.layers.\(index)."
        let bias = cfg.hasAttentionBias
        let attention = AttentionWeights(
            qWeight: try floats(p + "self_attn.q_proj.weight", [h * d, c]),
            qBias: try optionalFloats(p + "self_attn.q_proj.bias", [h * d], present: bias),
            kWeight: try floats(p + "self_attn.k_proj.weight", [kvh * d, c]),
            kBias: try optionalFloats(p + "self_attn.k_proj.bias", [kvh * d], present: bias),
            vWeight: try floats(p + "self_attn.v_proj.weight", [kvh * d, c]),
            vBias: try optionalFloats(p + "self_attn.v_proj.bias", [kvh * d], present: bias),
            oWeight: try floats(p + "self_attn.o_proj.weight", [c, h * d]),
            oBias: try optionalFloats(p + "self_attn.o_proj.bias", [c], present: bias),
            sinks: try floats(p + "self_attn.sinks", [h]))
        return LayerWeights(
            inputNorm: try floats(p + "input_layernorm.weight", [c]),
            postAttentionNorm: try floats(p + "post_attention_layernorm.weight", [c]),
            attention: attention,
            moe: try moeWeights(prefix: p + "mlp."))
    }

    private func moeWeights(prefix p: String) throws -> MoEWeights {
        let c = config.hiddenSize, e = config.numLocalExperts, i = config.intermediateSize
        return MoEWeights(
            routerWeight: try floats(p + "router.weight", [e, c]),
            routerBias: try floats(p + "router.bias", [e]),
            gateUp: try expertMatrix(p + "experts.gate_up_proj", experts: e, inFeatures: c, outFeatures: 2 * i),
            gateUpBias: try floats(p + "experts.gate_up_proj_bias", [e, 2 * i]),
            down: try expertMatrix(p + "experts.down_proj", experts: e, inFeatures: i, outFeatures: c),
            downBias: try floats(p + "experts.down_proj_bias", [e, c]))
    }

    /// [E, in, out] from either MXFP4 `<name>_blocks`/`<name>_scales` ([E, out, in/32, 16] and
    /// [E, out, in/32]) or a dense `<name>` already in [E, in, out] (what transformers saves).
    func expertMatrix(_ name: String, experts e: Int, inFeatures: Int, outFeatures: Int) throws -> [Float] {
        if store.contains(name + "_blocks") {
            guard inFeatures % 32 == 0 else {
                throw EngineError.unexpectedTensor(file: try store.file(for: name + "_blocks").path, tensor: name + "_blocks",
                                                   reason: "MXFP4 needs in-features divisible by 32, have \(inFeatures)")
            }
            let g = inFeatures / 32
            let blocks = try store.uint8s(name + "_blocks", shape: [e, outFeatures, g, 16])
            let scales = try store.uint8s(name + "_scales", shape: [e, outFeatures, g])
            return try MXFP4.dequantize(blocks: blocks, scales: scales, experts: e, rows: outFeatures, groups: g)
        }
        return try floats(name, [e, inFeatures, outFeatures])
    }
}
