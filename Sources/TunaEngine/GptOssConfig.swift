import Foundation

/// RoPE settings as transformers writes them. transformers 5.x saves `rope_parameters`
/// (with `rope_theta` inside); the openai/gpt-oss hub checkpoints (transformers 4.55) have
/// `rope_scaling` plus a top-level `rope_theta`. Both decode into this.
public struct RopeParameters: Codable, Equatable, Sendable {
    public var ropeType: String?
    public var ropeTheta: Double?
    public var factor: Double?
    public var betaFast: Double?
    public var betaSlow: Double?
    public var originalMaxPositionEmbeddings: Int?
    public var truncate: Bool?
    public var attentionFactor: Double?
    public var mscale: Double?
    public var mscaleAllDim: Double?
    /// Old configs say `type` instead of `rope_type`.
    public var type: String?

    enum CodingKeys: String, CodingKey {
        case ropeType = "rope_type", ropeTheta = "rope_theta", factor
        case betaFast = "beta_fast", betaSlow = "beta_slow"
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        case truncate, attentionFactor = "attention_factor", mscale, mscaleAllDim = "mscale_all_dim", type
    }

    public init(ropeType: String? = "yarn", ropeTheta: Double? = nil, factor: Double? = nil, betaFast: Double? = nil,
                betaSlow: Double? = nil, originalMaxPositionEmbeddings: Int? = nil, truncate: Bool? = nil) {
        self.ropeType = ropeType; self.ropeTheta = ropeTheta; self.factor = factor; self.betaFast = betaFast
        self.betaSlow = betaSlow; self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings; self.truncate = truncate
    }
}

public struct QuantizationConfig: Codable, Equatable, Sendable {
    public var quantMethod: String?
    public var modulesToNotConvert: [String]?
    enum CodingKeys: String, CodingKey { case quantMethod = "quant_method", modulesToNotConvert = "modules_to_not_convert" }
}

/// gpt-oss `config.json`, keyed by its own names. Optional fields are optional because real
/// files omit them; the `resolved*` accessors apply transformers' defaults.
public struct GptOssConfig: Codable, Equatable, Sendable {
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int?
    public var headDim: Int?
    public var numLocalExperts: Int
    public var numExpertsPerTok: Int?
    /// Alias written by the openai/gpt-oss hub configs.
    public var expertsPerToken: Int?
    public var intermediateSize: Int
    public var slidingWindow: Int?
    public var layerTypes: [String]?
    public var ropeTheta: Double?
    public var ropeParameters: RopeParameters?
    public var ropeScaling: RopeParameters?
    public var rmsNormEps: Double?
    public var swigluLimit: Double?
    public var vocabSize: Int
    public var maxPositionEmbeddings: Int?
    public var attentionBias: Bool?
    public var tieWordEmbeddings: Bool?
    public var quantizationConfig: QuantizationConfig?
    public var modelType: String?

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim", numLocalExperts = "num_local_experts"
        case numExpertsPerTok = "num_experts_per_tok", expertsPerToken = "experts_per_token"
        case intermediateSize = "intermediate_size", slidingWindow = "sliding_window", layerTypes = "layer_types"
        case ropeTheta = "rope_theta", ropeParameters = "rope_parameters", ropeScaling = "rope_scaling"
        case rmsNormEps = "rms_norm_eps", swigluLimit = "swiglu_limit", vocabSize = "vocab_size"
        case maxPositionEmbeddings = "max_position_embeddings", attentionBias = "attention_bias"
        case tieWordEmbeddings = "tie_word_embeddings", quantizationConfig = "quantization_config"
        case modelType = "model_type"
    }

    public init(hiddenSize: Int, numHiddenLayers: Int, numAttentionHeads: Int, numKeyValueHeads: Int, headDim: Int,
                numLocalExperts: Int, numExpertsPerTok: Int, intermediateSize: Int, vocabSize: Int,
                slidingWindow: Int? = 128, layerTypes: [String]? = nil, ropeParameters: RopeParameters? = nil,
                rmsNormEps: Double = 1e-5, maxPositionEmbeddings: Int = 131072) {
        self.hiddenSize = hiddenSize; self.numHiddenLayers = numHiddenLayers; self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads; self.headDim = headDim; self.numLocalExperts = numLocalExperts
        self.numExpertsPerTok = numExpertsPerTok; self.intermediateSize = intermediateSize; self.vocabSize = vocabSize
        self.slidingWindow = slidingWindow; self.layerTypes = layerTypes; self.ropeParameters = ropeParameters
        self.rmsNormEps = rmsNormEps; self.maxPositionEmbeddings = maxPositionEmbeddings
    }

    public static func load(from url: URL) throws -> GptOssConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw EngineError.io(file: url.path, reason: "cannot read config") }
        let config: GptOssConfig
        do { config = try JSONDecoder().decode(GptOssConfig.self, from: data) } catch {
            throw EngineError.badConfig(file: url.path, reason: "cannot decode gpt-oss config: \(error)")
        }
        try config.validate(file: url.path)
        return config
    }

    // MARK: transformers' defaults (configuration_gpt_oss.py, modeling_rope_utils.py)

    public var kvHeads: Int { numKeyValueHeads ?? numAttentionHeads }
    public var resolvedHeadDim: Int { headDim ?? hiddenSize / numAttentionHeads }
    public var topK: Int { numExpertsPerTok ?? expertsPerToken ?? 4 }
    public var eps: Float { Float(rmsNormEps ?? 1e-5) }
    /// transformers' GptOssExperts hard-codes 7.0 and ignores `swiglu_limit`; real checkpoints
    /// say 7.0 too. We honour the field (defaulting to 7.0) so a model that differs is visible.
    public var limit: Float { Float(swigluLimit ?? 7.0) }
    public var hasAttentionBias: Bool { attentionBias ?? true }
    /// Layer i is sliding unless config says otherwise; default alternates sliding, full, ...
    public var resolvedLayerTypes: [String] {
        layerTypes ?? (0..<numHiddenLayers).map { $0 % 2 == 0 ? "sliding_attention" : "full_attention" }
    }
    public func isSliding(layer: Int) -> Bool { resolvedLayerTypes[layer] == "sliding_attention" && slidingWindow != nil }
    public var isMXFP4: Bool { quantizationConfig?.quantMethod == "mxfp4" }

    /// RoPE parameters after transformers' `standardize_rope_params`: rope_scaling is the old
    /// name of rope_parameters, a top-level rope_theta moves inside, and the gpt-oss default
    /// (YaRN x32 over 4096, theta 150000) applies when neither is present.
    public var resolvedRope: RopeParameters {
        var rope = ropeParameters ?? ropeScaling ?? RopeParameters(
            ropeType: "yarn", factor: 32, betaFast: 32, betaSlow: 1, originalMaxPositionEmbeddings: 4096, truncate: false)
        if rope.ropeType == nil { rope.ropeType = rope.type ?? "default" }
        if rope.ropeTheta == nil { rope.ropeTheta = ropeTheta ?? 150000 }
        if rope.ropeType == "yarn", rope.originalMaxPositionEmbeddings == nil {
            rope.originalMaxPositionEmbeddings = maxPositionEmbeddings ?? 131072
        }
        return rope
    }

    public func validate(file: String) throws {
        func fail(_ reason: String) -> EngineError { .badConfig(file: file, reason: reason) }
        let positive: [(String, Int)] = [("hidden_size", hiddenSize), ("num_hidden_layers", numHiddenLayers),
                                         ("num_attention_heads", numAttentionHeads), ("num_key_value_heads", kvHeads),
                                         ("head_dim", resolvedHeadDim), ("num_local_experts", numLocalExperts),
                                         ("num_experts_per_tok", topK), ("intermediate_size", intermediateSize),
                                         ("vocab_size", vocabSize)]
        for (name, v) in positive where v <= 0 { throw fail("\(name) must be positive, is \(v)") }
        guard numAttentionHeads % kvHeads == 0 else {
            throw fail("num_attention_heads \(numAttentionHeads) is not a multiple of num_key_value_heads \(kvHeads)")
        }
        guard resolvedHeadDim % 2 == 0 else { throw fail("head_dim \(resolvedHeadDim) must be even for RoPE") }
        guard topK <= numLocalExperts else { throw fail("num_experts_per_tok \(topK) > num_local_experts \(numLocalExperts)") }
        if let n = numExpertsPerTok, let m = expertsPerToken, n != m {
            throw fail("num_experts_per_tok \(n) disagrees with experts_per_token \(m)")
        }
        guard resolvedLayerTypes.count == numHiddenLayers else {
            throw fail("layer_types has \(resolvedLayerTypes.count) entries for \(numHiddenLayers) layers")
        }
        for t in resolvedLayerTypes where t != "sliding_attention" && t != "full_attention" {
            throw fail("unknown layer type '\(t)'")
        }
        if let w = slidingWindow, w <= 0 { throw fail("sliding_window must be positive, is \(w)") }
        let rope = resolvedRope
        guard rope.ropeType == "yarn" || rope.ropeType == "default" else {
            throw fail("rope_type '\(rope.ropeType ?? "")' is not supported (yarn, default)")
        }
        if isMXFP4, hiddenSize % 32 != 0 || intermediateSize % 32 != 0 {
            throw fail("MXFP4 needs hidden_size and intermediate_size divisible by 32")
        }
        if let q = quantizationConfig?.quantMethod, q != "mxfp4" { throw fail("quantization '\(q)' is not supported") }
    }
}
