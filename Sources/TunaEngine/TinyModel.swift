import Foundation
import TunaRandom

/// Writes small random gpt-oss checkpoints laid out exactly like the real ones, so the whole
/// pipeline (loading, MXFP4, LoRA training, merging) can run on a laptop without downloads or
/// Python: config.json as transformers writes it plus `quantization_config: mxfp4`, and one
/// model.safetensors with BF16 everywhere except the experts, which are MXFP4
/// `*_blocks`/`*_scales` (U8) with BF16 biases, under the real tensor names.
///
/// Weights follow Tests/Python/reference/gptoss.py's `_randomize` (norms 1 + 0.2 N, embeddings
/// and sinks N(0, 1), biases 0.1 N, every projection N(0, 1/in)) so activations stay O(1)
/// and nothing saturates; the experts draw N(0, 1/in) too and go through `MXFP4.quantize`.
/// Normals are Irwin-Hall sums of 12 uniforms from SplitMix64 (additions only, no libm), so
/// a seed gives the same bytes on every platform.
public enum TinyModel {
    public struct Spec: Sendable, Equatable, Codable {
        public var hiddenSize: Int
        public var layers: Int
        public var heads: Int
        public var kvHeads: Int
        public var headDim: Int
        public var experts: Int
        public var expertsPerToken: Int
        public var intermediateSize: Int
        public var vocabSize: Int
        /// Even layers slide over this many tokens, odd layers attend fully (gpt-oss's pattern).
        public var slidingWindow: Int
        /// gpt-oss's RoPE: YaRN x32 over 4096 positions, theta 150000.
        public var ropeTheta: Double
        public var yarnFactor: Double
        public var originalMaxPositionEmbeddings: Int
        public var maxPositionEmbeddings: Int
        /// Written to config.json for generation; nil omits them.
        public var eosTokenID: Int?
        public var padTokenID: Int?

        public init(hiddenSize: Int = 64, layers: Int = 4, heads: Int = 4, kvHeads: Int = 2, headDim: Int = 16,
                    experts: Int = 8, expertsPerToken: Int = 2, intermediateSize: Int = 64, vocabSize: Int = 1088,
                    slidingWindow: Int = 16, ropeTheta: Double = 150000, yarnFactor: Double = 32,
                    originalMaxPositionEmbeddings: Int = 4096, maxPositionEmbeddings: Int = 131072,
                    eosTokenID: Int? = nil, padTokenID: Int? = nil) {
            self.hiddenSize = hiddenSize; self.layers = layers; self.heads = heads; self.kvHeads = kvHeads
            self.headDim = headDim; self.experts = experts; self.expertsPerToken = expertsPerToken
            self.intermediateSize = intermediateSize; self.vocabSize = vocabSize; self.slidingWindow = slidingWindow
            self.ropeTheta = ropeTheta; self.yarnFactor = yarnFactor
            self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
            self.maxPositionEmbeddings = maxPositionEmbeddings; self.eosTokenID = eosTokenID; self.padTokenID = padTokenID
        }

        /// The README demo's model with TunaText's `TinyTokenizer` (K = 1024 ordinary + 64
        /// special ids = 1088): `<|return|>` (K + 4) ends a reply, `<|endoftext|>` (K + 1) pads.
        public static let demo = Spec(eosTokenID: 1028, padTokenID: 1025)
    }

    /// Writes config.json and model.safetensors into `directory` (created if needed).
    public static func write(to directory: URL, spec: Spec, seed: UInt64) throws {
        let config = try configJSON(spec)
        // Validate with the engine's own rules before writing anything.
        let decoded: GptOssConfig
        do { decoded = try JSONDecoder().decode(GptOssConfig.self, from: config) } catch {
            throw EngineError.badConfig(file: "<tiny model>", reason: "\(error)")
        }
        try decoded.validate(file: "<tiny model>")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try config.write(to: directory.appendingPathComponent("config.json"))
        } catch {
            throw EngineError.io(file: directory.path, reason: "cannot write config.json: \(error)")
        }
        try tensors(spec, seed: seed).write(to: directory.appendingPathComponent(TensorStore.singleFileName))
    }

    /// config.json: the fields transformers' GptOssConfig.to_dict() has that matter (no
    /// id2label/return_dict noise), as Tests/Python/reference/gptoss.py writes them.
    static func configJSON(_ s: Spec) throws -> Data {
        var object: [String: Any] = [
            "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss",
            "hidden_size": s.hiddenSize, "num_hidden_layers": s.layers, "num_attention_heads": s.heads,
            "num_key_value_heads": s.kvHeads, "head_dim": s.headDim, "num_local_experts": s.experts,
            "num_experts_per_tok": s.expertsPerToken, "intermediate_size": s.intermediateSize,
            "vocab_size": s.vocabSize, "sliding_window": s.slidingWindow,
            "layer_types": (0..<s.layers).map { $0 % 2 == 0 ? "sliding_attention" : "full_attention" },
            "max_position_embeddings": s.maxPositionEmbeddings, "rms_norm_eps": 1e-5, "swiglu_limit": 7.0,
            "rope_parameters": ["rope_type": "yarn", "rope_theta": s.ropeTheta, "factor": s.yarnFactor,
                                "beta_fast": 32.0, "beta_slow": 1.0, "truncate": false,
                                "original_max_position_embeddings": s.originalMaxPositionEmbeddings] as [String: Any],
            "attention_bias": true, "attention_dropout": 0.0, "hidden_act": "silu", "initializer_range": 0.02,
            "router_aux_loss_coef": 0.9, "output_router_logits": false, "tie_word_embeddings": false,
            "use_cache": true, "dtype": "bfloat16",
            "quantization_config": ["quant_method": "mxfp4", "modules_to_not_convert": [
                "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]] as [String: Any],
        ]
        if let eos = s.eosTokenID { object["eos_token_id"] = eos }
        if let pad = s.padTokenID { object["pad_token_id"] = pad }
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }

    /// Every tensor, drawn in a fixed order (the file's order is the writer's, by name).
    static func tensors(_ s: Spec, seed: UInt64) throws -> SafeTensorsWriter {
        var rng = SplitMix64(seed: seed)
        var w = SafeTensorsWriter(metadata: ["format": "pt"])  // transformers requires format=pt
        let c = s.hiddenSize, i = s.intermediateSize, e = s.experts
        func bf16(_ name: String, _ shape: [Int], _ draw: (inout SplitMix64) -> Float) throws {
            let n = shape.reduce(1, *)
            var bytes = [UInt8](); bytes.reserveCapacity(2 * n)
            for _ in 0..<n {
                let b = HalfFloat.floatToBF16(draw(&rng))
                bytes.append(UInt8(b & 0xFF)); bytes.append(UInt8(b >> 8))
            }
            try w.add(name, dtype: .bf16, shape: shape, bytes: bytes)
        }
        let norm: (inout SplitMix64) -> Float = { 1 + 0.2 * $0.normal() }
        let unit: (inout SplitMix64) -> Float = { $0.normal() }
        let bias: (inout SplitMix64) -> Float = { 0.1 * $0.normal() }
        func projection(_ inFeatures: Int) -> (inout SplitMix64) -> Float {
            let scale = 1 / Float(inFeatures).squareRoot()
            return { scale * $0.normal() }
        }
        try bf16("model.embed_tokens.weight", [s.vocabSize, c], unit)
        for layer in 0..<s.layers {
            let p = "model.layers.\(layer)."
            try bf16(p + "input_layernorm.weight", [c], norm)
            try bf16(p + "post_attention_layernorm.weight", [c], norm)
            for (proj, out, inF) in [("q_proj", s.heads * s.headDim, c), ("k_proj", s.kvHeads * s.headDim, c),
                                     ("v_proj", s.kvHeads * s.headDim, c), ("o_proj", c, s.heads * s.headDim)] {
                try bf16(p + "self_attn.\(proj).weight", [out, inF], projection(inF))
                try bf16(p + "self_attn.\(proj).bias", [out], bias)
            }
            try bf16(p + "self_attn.sinks", [s.heads], unit)
            try bf16(p + "mlp.router.weight", [e, c], projection(c))
            try bf16(p + "mlp.router.bias", [e], bias)
            // gate_up rows interleave gate and up (transformers reads [..., ::2] and [..., 1::2]).
            for (proj, out, inF) in [("gate_up_proj", 2 * i, c), ("down_proj", c, i)] {
                let draw = projection(inF)
                let weights = (0..<(e * out * inF)).map { _ in draw(&rng) }  // [E, out, in]
                let q = try MXFP4.quantize(weights, experts: e, rows: out, columns: inF)
                try w.add(p + "mlp.experts.\(proj)_blocks", dtype: .u8, shape: [e, out, inF / 32, 16], bytes: q.blocks)
                try w.add(p + "mlp.experts.\(proj)_scales", dtype: .u8, shape: [e, out, inF / 32], bytes: q.scales)
                try bf16(p + "mlp.experts.\(proj)_bias", [e, out], bias)
            }
        }
        try bf16("model.norm.weight", [c], norm)
        try bf16("lm_head.weight", [s.vocabSize, c], projection(c))
        return w
    }
}

extension SplitMix64 {
    /// Approximately N(0, 1): the sum of 12 U(0, 1) has mean 6 and variance 1. Exact
    /// additions in Double, so identical everywhere; tails end at +-6, harmless for init.
    mutating func normal() -> Float {
        var sum = 0.0
        for _ in 0..<12 { sum += Double(next() >> 11) * 0x1p-53 }
        return Float(sum - 6)
    }
}
