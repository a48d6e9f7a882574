import Foundation
import TunaRandom

/// LoRA weights in PEFT's own naming and shapes, so the tensors dictionary *is* the
/// `adapter_model.safetensors` PEFT writes and reads (keys without the adapter name):
///
///   attention  `base_model.model.model.layers.L.self_attn.q_proj.lora_A.weight`  [r, in]
///                                                            `.lora_B.weight`  [out, r]
///   experts    `base_model.model.model.layers.L.mlp.experts.lora_A.weight`      [r·E, in]
///                                                     `.lora_B.weight`         [out, r·E]
///
/// For an expert parameter (peft 0.21 `ParamWrapper`, gpt-oss experts are `is_transposed`, so
/// in/out are the parameter's own [E, in, out]) A reads as (E, r, in) and B as (out, r, E):
/// expert e adds `scaling · (x A_e^T) B_e^T`. When both gate_up_proj and down_proj of one layer
/// are targeted PEFT nests the wrappers and gate_up's tensors get a `base_layer.` infix.
public struct LoRAAdapter: Sendable {
    public var settings: LoRASettings
    public var tensors: [String: [Float]]
    public private(set) var shapes: [String: [Int]]
    let layout: Layout

    /// Where each tensor lives in the model.
    struct Layout: Sendable {
        struct Linear: Sendable { let a: String, b: String, inFeatures: Int, outFeatures: Int }
        struct Expert: Sendable { let a: String, b: String, inFeatures: Int, outFeatures: Int }
        var attention: [[String: Linear]]   // per layer, by module name
        var experts: [[String: Expert]]     // per layer, by parameter name
    }

    static let prefix = "base_model.model.model.layers."

    /// Names and shapes for `settings` on a model of `config`.
    static func layout(_ s: LoRASettings, _ cfg: GptOssConfig) throws -> (Layout, [String: [Int]]) {
        let r = s.rank, c = cfg.hiddenSize, e = cfg.numLocalExperts, i = cfg.intermediateSize
        let q = cfg.numAttentionHeads * cfg.resolvedHeadDim, kv = cfg.kvHeads * cfg.resolvedHeadDim
        let dims: [String: (Int, Int)] = ["q_proj": (c, q), "k_proj": (c, kv), "v_proj": (c, kv), "o_proj": (q, c)]
        let expertDims: [String: (Int, Int)] = ["gate_up_proj": (c, 2 * i), "down_proj": (i, c)]
        var shapes: [String: [Int]] = [:]
        var layout = Layout(attention: [], experts: [])
        for p in s.targetParameters {
            guard let (layer, _) = LoRASettings.parseParameter(p), (layer ?? 0) < cfg.numHiddenLayers else {
                throw EngineError.badInput(reason: "lora.target_parameters: \(p) names a layer the model (\(cfg.numHiddenLayers) layers) does not have")
            }
        }
        for l in 0..<cfg.numHiddenLayers {
            var att: [String: Layout.Linear] = [:]
            for m in LoRASettings.attentionModules where s.targets(layer: l, module: m) {
                let (inF, outF) = dims[m]!
                let base = "\(prefix)\(l).self_attn.\(m)."
                att[m] = .init(a: base + "lora_A.weight", b: base + "lora_B.weight", inFeatures: inF, outFeatures: outF)
                shapes[base + "lora_A.weight"] = [r, inF]
                shapes[base + "lora_B.weight"] = [outF, r]
            }
            var exp: [String: Layout.Expert] = [:]
            let targeted = s.expertTargets(layer: l)
            for p in LoRASettings.expertParameters where targeted.contains(p) {
                let (inF, outF) = expertDims[p]!
                let nested = p == "gate_up_proj" && targeted.count == 2
                let base = "\(prefix)\(l).mlp.experts." + (nested ? "base_layer." : "")
                exp[p] = .init(a: base + "lora_A.weight", b: base + "lora_B.weight", inFeatures: inF, outFeatures: outF)
                shapes[base + "lora_A.weight"] = [r * e, inF]
                shapes[base + "lora_B.weight"] = [outF, r * e]
            }
            layout.attention.append(att)
            layout.experts.append(exp)
        }
        return (layout, shapes)
    }

    /// A fresh adapter initialised as PEFT's default (`init_lora_weights=True`) does: A from
    /// kaiming_uniform_(a=√5), i.e. U(-1/√in, 1/√in), and B zero, so training starts at the base
    /// model. The draws come from `seed` (not torch's generator: same distribution, other numbers).
    public static func initialized(settings: LoRASettings, config: GptOssConfig, seed: UInt64) throws -> LoRAAdapter {
        let (layout, shapes) = try layout(settings, config)
        var rng = SplitMix64(seed: seed)
        var tensors: [String: [Float]] = [:]
        for name in shapes.keys.sorted() {
            let shape = shapes[name]!
            if name.hasSuffix("lora_A.weight") {
                let bound = 1 / Float(shape[1]).squareRoot()
                tensors[name] = (0..<(shape[0] * shape[1])).map { _ in (rng.nextUnitFloat() * 2 - 1) * bound }
            } else {
                tensors[name] = [Float](repeating: 0, count: shape[0] * shape[1])
            }
        }
        return LoRAAdapter(settings: settings, tensors: tensors, shapes: shapes, layout: layout)
    }

    /// Zeros shaped like this adapter (gradient accumulators, optimizer moments).
    public func zeros() -> [String: [Float]] { tensors.mapValues { [Float](repeating: 0, count: $0.count) } }

    /// Total number of trainable values.
    public var parameterCount: Int { tensors.values.reduce(0) { $0 + $1.count } }

    // MARK: per-layer views used by the forward and backward passes

    func attention(layer: Int, module: String) -> LinearLoRA? {
        guard let l = layout.attention[layer][module] else { return nil }
        return LinearLoRA(a: tensors[l.a]!, b: tensors[l.b]!, rank: settings.rank, inFeatures: l.inFeatures,
                          outFeatures: l.outFeatures, scaling: settings.scaling)
    }

    func expert(layer: Int, parameter: String, experts: Int) -> ExpertLoRA? {
        guard let l = layout.experts[layer][parameter] else { return nil }
        return ExpertLoRA(a: tensors[l.a]!, b: tensors[l.b]!, rank: settings.rank, experts: experts,
                          inFeatures: l.inFeatures, outFeatures: l.outFeatures, scaling: settings.scaling)
    }

    func names(layer: Int, module: String) -> (a: String, b: String)? {
        layout.attention[layer][module].map { ($0.a, $0.b) }
    }

    func names(layer: Int, parameter: String) -> (a: String, b: String)? {
        layout.experts[layer][parameter].map { ($0.a, $0.b) }
    }

    /// Lowest layer holding any LoRA tensor: the backward pass stops there.
    var lowestLayer: Int? {
        (0..<layout.attention.count).first { !layout.attention[$0].isEmpty || !layout.experts[$0].isEmpty }
    }

    func layerIsTargeted(_ l: Int) -> Bool { !layout.attention[l].isEmpty || !layout.experts[l].isEmpty }
}

