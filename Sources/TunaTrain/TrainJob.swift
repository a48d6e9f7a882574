import Foundation
import TunaCore
import TunaEngine
import TunaText

/// A `native` job as the trainer reads it: the validated job spec (docs/job-spec.md, every
/// default already filled in by the coordinator) turned into typed settings. Numbers are read
/// by value (an integral float may arrive as an integer).
public struct TrainJob: Sendable {
    public var name: String
    public var modelPath: String
    public var dataset: DatasetSpec
    public var lora: LoRASettings
    public var train: TrainSettings

    /// - Parameter root: relative `model` and `dataset` paths are resolved against it (the
    ///   worker's `--data-root`, else the directory the command runs in).
    public init(json: JSONValue, root: URL) throws {
        func path(_ p: String) -> String { p.hasPrefix("/") ? p : root.appendingPathComponent(p).standardizedFileURL.path }
        guard let model = json["model"]?.stringValue else { throw TrainError.badJob("model: required") }
        guard let ds = json["dataset"]?.objectValue, let dsPath = ds["path"]?.stringValue else { throw TrainError.badJob("dataset.path: required") }
        name = json["name"]?.stringValue ?? "job"
        modelPath = path(model)
        let l = json["lora"]?.objectValue ?? [:]
        let t = json["train"]?.objectValue ?? [:]
        train = try TrainSettings(t)

        func strings(_ v: JSONValue?) -> [String] {
            if let s = v?.stringValue { return [s] }
            return v?.arrayValue?.compactMap(\.stringValue) ?? []
        }
        let rank = l["rank"]?.intValue ?? 8
        do {
            lora = try LoRASettings(rank: rank, alpha: l["alpha"]?.doubleValue ?? Double(2 * rank),
                                    dropout: l["dropout"]?.doubleValue ?? 0, useRSLoRA: l["use_rslora"]?.boolValue ?? false,
                                    targetModules: l["target_modules"].map(strings) ?? LoRASettings.attentionModules,
                                    targetParameters: strings(l["target_parameters"]))
        } catch let e as EngineError { throw TrainError.badJob(e.description.replacingOccurrences(of: "bad input: ", with: "")) }

        var fields = DatasetSpec.Fields()
        if let f = ds["fields"]?.objectValue {
            if let v = f["prompt"]?.stringValue { fields.prompt = v }
            if let v = f["response"]?.stringValue { fields.response = v }
            if let v = f["system"]?.stringValue { fields.system = v }
            if let v = f["thinking"]?.stringValue { fields.thinking = v }
            if let v = f["messages"]?.stringValue { fields.messages = v }
        }
        let format = ds["format"]?.stringValue ?? "jsonl", template = ds["template"]?.stringValue ?? "harmony"
        guard let fmt = DatasetSpec.Format(rawValue: format) else { throw TrainError.badJob("dataset.format: \(format) is not csv, jsonl or chat") }
        guard let tpl = DatasetSpec.Template(rawValue: template) else { throw TrainError.badJob("dataset.template: \(template) is not harmony or im_start") }
        dataset = DatasetSpec(path: path(dsPath), format: fmt, template: tpl, fields: fields,
                              promptTemplate: ds["prompt_template"]?.stringValue, responseTemplate: ds["response_template"]?.stringValue,
                              system: ds["system"]?.stringValue, valPath: ds["val_path"]?.stringValue.map(path),
                              reasoningEffort: ds["reasoning_effort"]?.stringValue, date: ds["date"]?.stringValue,
                              valFraction: ds["val_fraction"]?.doubleValue ?? 0.1, seed: UInt64(train.seed),
                              maxSeqLen: train.maxSeqLen)
    }
}

/// The `train` section (defaults as in docs/job-spec.md).
public struct TrainSettings: Sendable, Equatable {
    public var epochs = 1, learningRate = 2e-4, scheduler = "linear", warmupRatio = 0.0, minLRRatio = 0.1
    public var batchSize = 1, gradAccum = 1, maxSeqLen = 1024, weightDecay = 0.0
    public var beta1 = 0.9, beta2 = 0.999, eps = 1e-8, maxGradNorm = 1.0, seed = 42
    public var evalEverySteps = 0, maxSteps = 0, checkpointEverySteps = 0
    public var gradientCheckpointing = false, packing = false

    public init() {}

    init(_ t: [String: JSONValue]) throws {
        func int(_ k: String, _ d: Int, min: Int) throws -> Int {
            guard let v = t[k], v != .null else { return d }
            guard let i = v.intValue, i >= min else { throw TrainError.badJob("train.\(k): \(v) is not an integer >= \(min)") }
            return i
        }
        func num(_ k: String, _ d: Double) throws -> Double {
            guard let v = t[k], v != .null else { return d }
            guard let x = v.doubleValue, x.isFinite else { throw TrainError.badJob("train.\(k): \(v) is not a number") }
            return x
        }
        epochs = try int("epochs", 1, min: 1); learningRate = try num("learning_rate", 2e-4)
        scheduler = t["scheduler"]?.stringValue ?? "linear"
        warmupRatio = try num("warmup_ratio", 0); minLRRatio = try num("min_lr_ratio", 0.1)
        batchSize = try int("batch_size", 1, min: 1); gradAccum = try int("grad_accum", 1, min: 1)
        maxSeqLen = try int("max_seq_len", 1024, min: 2); weightDecay = try num("weight_decay", 0)
        beta1 = try num("adam_beta1", 0.9); beta2 = try num("adam_beta2", 0.999); eps = try num("adam_eps", 1e-8)
        maxGradNorm = try num("max_grad_norm", 1); seed = try int("seed", 42, min: 0)
        evalEverySteps = try int("eval_every_steps", 0, min: 0); maxSteps = try int("max_steps", 0, min: 0)
        checkpointEverySteps = try int("checkpoint_every_steps", 0, min: 0)
        gradientCheckpointing = t["gradient_checkpointing"]?.boolValue ?? false
        packing = t["packing"]?.boolValue ?? false
    }
}

public enum TrainError: Error, CustomStringConvertible, Equatable {
    case badJob(String)
    case badData(String)
    case badCheckpoint(file: String, reason: String)
    case interrupted(step: Int)

    public var description: String {
        switch self {
        case let .badJob(s): return "job: \(s)"
        case let .badData(s): return "data: \(s)"
        case let .badCheckpoint(file, reason): return "\(file): \(reason)"
        case let .interrupted(step): return "interrupted at step \(step) (checkpoint written)"
        }
    }
}
