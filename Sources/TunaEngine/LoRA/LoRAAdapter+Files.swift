import Foundation

/// PEFT's adapter directory: `adapter_config.json` + `adapter_model.safetensors` (F32).
extension LoRAAdapter {
    public static let configFile = "adapter_config.json"
    public static let weightsFile = "adapter_model.safetensors"

    /// Writes both files (weights first, config last, each through a temp file and a rename, so
    /// a directory with a config always has complete weights).
    public func save(directory: URL, baseModel: String) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var writer = SafeTensorsWriter(metadata: ["format": "pt"])
        for name in tensors.keys.sorted() { try writer.add(name, shape: shapes[name]!, floats: tensors[name]!) }
        try Self.atomicWrite(try writer.serialized(), to: directory.appendingPathComponent(Self.weightsFile))
        let config: [String: Any] = [
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": baseModel,
            "r": settings.rank, "lora_alpha": settings.alpha, "lora_dropout": settings.dropout,
            "use_rslora": settings.useRSLoRA, "target_modules": settings.targetModulesRegex.map { $0 as Any } ?? settings.targetModules,
            "target_parameters": settings.targetParameters, "bias": "none", "fan_in_fan_out": false,
            "inference_mode": true, "init_lora_weights": true, "use_dora": false, "modules_to_save": NSNull(),
            "layers_to_transform": NSNull(), "layers_pattern": NSNull(), "rank_pattern": [String: Any](),
            "alpha_pattern": [String: Any](), "revision": NSNull(),
        ]
        let json = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try Self.atomicWrite(json, to: directory.appendingPathComponent(Self.configFile))
    }

    /// Reads a PEFT adapter directory for a model of `config`. Every tensor the settings imply
    /// must be there with its exact shape, and nothing else may be: a mismatch is an error that
    /// names the file and tensor, never a silently half-loaded adapter.
    public static func load(directory: URL, config: GptOssConfig) throws -> LoRAAdapter {
        let configURL = directory.appendingPathComponent(configFile)
        let settings = try readSettings(configURL)
        let (layout, shapes) = try layout(settings, config)
        let weightsPath = directory.appendingPathComponent(weightsFile).path
        let file = try SafeTensorsFile(path: weightsPath)
        var tensors: [String: [Float]] = [:]
        for (name, shape) in shapes {
            // PEFT keys may carry the adapter name (".default.") when saved by hand; accept both.
            let key = file.tensors[name] != nil ? name : name.replacingOccurrences(of: ".weight", with: ".default.weight")
            guard let info = file.tensors[key] else { throw EngineError.missingTensor(file: weightsPath, tensor: name) }
            guard info.shape == shape else {
                throw EngineError.unexpectedTensor(file: weightsPath, tensor: name, reason: "shape \(info.shape), expected \(shape) for r=\(settings.rank)")
            }
            tensors[name] = try file.floats(key)
        }
        if let extra = file.tensors.keys.sorted().first(where: { !shapes.keys.contains($0) && !shapes.keys.contains($0.replacingOccurrences(of: ".default.weight", with: ".weight")) }) {
            throw EngineError.unexpectedTensor(file: weightsPath, tensor: extra, reason: "not part of an adapter with these targets (\(configURL.lastPathComponent))")
        }
        return LoRAAdapter(settings: settings, tensors: tensors, shapes: shapes, layout: layout)
    }

    static func readSettings(_ url: URL) throws -> LoRASettings {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw EngineError.io(file: url.path, reason: "cannot read: \(error.localizedDescription)") }
        guard let o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw EngineError.badConfig(file: url.path, reason: "not a JSON object")
        }
        if let type = o["peft_type"] as? String, type != "LORA" { throw EngineError.badConfig(file: url.path, reason: "peft_type \(type) is not LORA") }
        guard let r = (o["r"] as? NSNumber)?.intValue else { throw EngineError.badConfig(file: url.path, reason: "missing r") }
        let alpha = (o["lora_alpha"] as? NSNumber)?.doubleValue ?? 8
        var modules: [String] = [], regex: String?
        if let s = o["target_modules"] as? String { if s == "all-linear" { modules = [s] } else { regex = s } }
        else if let a = o["target_modules"] as? [String] { modules = a }
        let parameters = (o["target_parameters"] as? [String]) ?? []
        for unsupported in ["use_dora", "fan_in_fan_out"] where (o[unsupported] as? Bool) == true {
            throw EngineError.badConfig(file: url.path, reason: "\(unsupported) is not supported")
        }
        if let pattern = o["rank_pattern"] as? [String: Any], !pattern.isEmpty {
            throw EngineError.badConfig(file: url.path, reason: "rank_pattern is not supported")
        }
        do {
            let dropout = (o["lora_dropout"] as? NSNumber)?.doubleValue ?? 0, rs = (o["use_rslora"] as? Bool) ?? false
            if let regex {
                return try LoRASettings(rank: r, alpha: alpha, dropout: dropout, useRSLoRA: rs, targetModulesRegex: regex,
                                        targetParameters: parameters)
            }
            return try LoRASettings(rank: r, alpha: alpha, dropout: dropout, useRSLoRA: rs, targetModules: modules,
                                    targetParameters: parameters, allowEmpty: true)
        } catch let EngineError.badInput(reason) {
            throw EngineError.badConfig(file: url.path, reason: reason)
        }
    }

    static func atomicWrite(_ data: Data, to url: URL) throws {
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
        do {
            try data.write(to: tmp)
            guard rename(tmp.path, url.path) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw EngineError.io(file: url.path, reason: "write failed: \(error.localizedDescription)")
        }
    }
}
