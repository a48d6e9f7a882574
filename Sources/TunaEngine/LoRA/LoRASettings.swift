import Foundation

/// The subset of PEFT's `LoraConfig` Tuna trains: `W x + scaling · B(A(dropout(x)))` with
/// scaling = alpha / r (or alpha / sqrt(r) with rsLoRA), on attention projections by module
/// name and on 3-D expert parameters by parameter name (PEFT's `target_parameters`).
public struct LoRASettings: Sendable, Equatable {
    public static let attentionModules = ["q_proj", "k_proj", "v_proj", "o_proj"]
    public static let expertParameters = ["gate_up_proj", "down_proj"]

    public var rank: Int
    public var alpha: Double
    public var dropout: Double
    public var useRSLoRA: Bool
    /// Attention targets with PEFT's list semantics: an entry matches a module whose name
    /// (`model.layers.L.self_attn.q_proj`) equals it or ends with "." + it, so `q_proj` means
    /// every layer and `model.layers.0.self_attn.q_proj` (what PEFT saves after resolving
    /// all-linear) only layer 0. "all-linear" expands to the four projections: in transformers'
    /// gpt-oss the router is a bare nn.Parameter, not an nn.Linear, and PEFT's all-linear skips
    /// the output layer, so q, k, v and o are every linear layer there is.
    public var targetModules: [String]
    /// PEFT's other form: one string, a regex the whole module name must match (adapters only).
    public var targetModulesRegex: String?
    /// `L.mlp.experts.gate_up_proj` / `L.mlp.experts.down_proj`, as given.
    public var targetParameters: [String]

    public init(rank: Int, alpha: Double, dropout: Double = 0, useRSLoRA: Bool = false,
                targetModules: [String] = LoRASettings.attentionModules, targetParameters: [String] = [],
                allowEmpty: Bool = false) throws {
        guard rank >= 1 else { throw EngineError.badInput(reason: "lora.rank: \(rank) is not a positive integer") }
        guard alpha > 0, alpha.isFinite else { throw EngineError.badInput(reason: "lora.alpha: \(alpha) is not > 0") }
        guard dropout >= 0, dropout < 1 else { throw EngineError.badInput(reason: "lora.dropout: \(dropout) is not in [0, 1)") }
        var modules: [String] = []
        for m in targetModules {
            if m == "all-linear" { modules += Self.attentionModules; continue }
            let last = String(m.split(separator: ".").last ?? "")
            guard Self.attentionModules.contains(last) else {
                throw EngineError.badInput(reason: "lora.target_modules: \(m) is not a linear layer of gpt-oss (one of "
                    + (Self.attentionModules + ["all-linear"]).joined(separator: ", ") + ")")
            }
            if !modules.contains(m) { modules.append(m) }
        }
        for p in targetParameters where Self.parseParameter(p) == nil {
            throw EngineError.badInput(reason: "lora.target_parameters: \(p) names no expert parameter (LAYER.mlp.experts.gate_up_proj or .down_proj)")
        }
        if dropout > 0, !targetParameters.isEmpty {
            // peft 0.21's ParamWrapper raises on lora_dropout != 0; an adapter trained with it
            // could not be loaded by PEFT, so refuse rather than write a native-only file.
            throw EngineError.badInput(reason:
                "lora.dropout: PEFT cannot apply dropout to expert parameters (target_parameters); set lora.dropout: 0 or drop target_parameters")
        }
        guard allowEmpty || !modules.isEmpty || !targetParameters.isEmpty else {
            throw EngineError.badInput(reason: "lora: no target_modules and no target_parameters; nothing to train")
        }
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.useRSLoRA = useRSLoRA
        self.targetModules = modules.sorted { (Self.rank($0), $0) < (Self.rank($1), $1) }
        self.targetParameters = targetParameters
    }

    /// PEFT's regex form of target_modules (`"target_modules": ".*q_proj"` in an adapter).
    public init(rank: Int, alpha: Double, dropout: Double = 0, useRSLoRA: Bool = false, targetModulesRegex: String,
                targetParameters: [String] = []) throws {
        guard (try? NSRegularExpression(pattern: targetModulesRegex)) != nil else {
            throw EngineError.badInput(reason: "lora.target_modules: \(targetModulesRegex) is not a valid regular expression")
        }
        try self.init(rank: rank, alpha: alpha, dropout: dropout, useRSLoRA: useRSLoRA, targetModules: [],
                      targetParameters: targetParameters, allowEmpty: true)
        self.targetModulesRegex = targetModulesRegex
    }

    private static func rank(_ m: String) -> Int {
        attentionModules.firstIndex(of: String(m.split(separator: ".").last ?? "")) ?? 9
    }

    /// Is attention module `module` of layer `layer` targeted?
    func targets(layer: Int, module: String) -> Bool {
        let key = "model.layers.\(layer).self_attn.\(module)"
        if let pattern = targetModulesRegex, let re = try? NSRegularExpression(pattern: "^(?:" + pattern + ")$") {
            return re.firstMatch(in: key, range: NSRange(key.startIndex..., in: key)) != nil
        }
        return targetModules.contains { key == $0 || key.hasSuffix("." + $0) }
    }

    public var scaling: Float { Float(useRSLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank)) }

    /// Parses a `target_parameters` entry with PEFT's matching rule: it names every parameter
    /// `model.layers.L.mlp.experts.P` it equals or is a dot-bounded suffix of, so
    /// `7.mlp.experts.gate_up_proj` (Tuna's specs), `model.layers.7.mlp.experts.gate_up_proj`
    /// (what PEFT saves when given full names) and `mlp.experts.down_proj` (every layer) all work.
    /// Returns the parameter and the layer (nil: every layer), or nil when it can match nothing.
    static func parseParameter(_ name: String) -> (layer: Int?, parameter: String)? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        let template = ["model", "layers", "#", "mlp", "experts"]
        guard let last = parts.last, expertParameters.contains(last), parts.count <= template.count + 1 else { return nil }
        var layer: Int?
        for (i, part) in parts.dropLast().enumerated() {
            let slot = template[template.count - (parts.count - 1) + i]
            if slot == "#" {
                guard let l = Int(part), l >= 0, String(l) == part else { return nil }
                layer = l
            } else if part != slot {
                return nil
            }
        }
        return (layer, last)
    }

    /// Expert parameters targeted in `layer`.
    func expertTargets(layer: Int) -> Set<String> {
        Set(targetParameters.compactMap { Self.parseParameter($0) }.filter { $0.layer == nil || $0.layer == layer }.map(\.parameter))
    }
}
