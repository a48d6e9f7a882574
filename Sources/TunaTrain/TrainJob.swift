import Foundation
import TunaCore
import TunaEngine
import TunaText

/// A `native` job as the trainer reads it: the validated `JobSpec` (every default already
/// filled in, by `JobValidator`) with paths resolved and the engine's own settings types.
public struct TrainJob: Sendable {
    public var name: String
    public var modelPath: String
    public var dataset: DatasetSpec
    public var lora: LoRASettings
    public var train: JobSpec.Train
    /// The task evaluation, if the job asks for one.
    public var eval: JobSpec.Eval?

    /// - Parameter root: relative `model` and `dataset` paths are resolved against it (the
    ///   worker's `--data-root`, else the directory the command runs in).
    public init(spec: JobSpec, root: URL) throws {
        guard let model = spec.model, let ds = spec.dataset, let l = spec.lora, let t = spec.train else {
            throw TrainError.badJob("a LoRA job needs model, dataset, lora and train (`task: lora`)")
        }
        name = spec.name
        modelPath = Self.resolve(model, root: root)
        train = t
        eval = spec.eval
        do {
            lora = try LoRASettings(rank: l.rank, alpha: l.alpha, dropout: l.dropout, useRSLoRA: l.useRSLoRA,
                                    targetModules: l.targetModules, targetParameters: l.targetParameters)
        } catch let e as EngineError { throw TrainError.badJob(e.description.replacingOccurrences(of: "bad input: ", with: "")) }
        dataset = try Self.dataset(ds, root: root, seed: t.seed, maxSeqLen: t.maxSeqLen)
    }

    static func resolve(_ p: String, root: URL) -> String {
        p.hasPrefix("/") ? p : root.appendingPathComponent(p).standardizedFileURL.path
    }

    /// The spec's data set as the loader takes it.
    static func dataset(_ ds: JobSpec.Dataset, root: URL, seed: Int, maxSeqLen: Int) throws -> DatasetSpec {
        var fields = DatasetSpec.Fields()
        if let f = ds.fields {
            if let v = f["prompt"] { fields.prompt = v }
            if let v = f["response"] { fields.response = v }
            if let v = f["system"] { fields.system = v }
            if let v = f["thinking"] { fields.thinking = v }
            if let v = f["messages"] { fields.messages = v }
        }
        // The contract's enums and the loader's are the same sets (JobSpecTests checks).
        guard let fmt = DatasetSpec.Format(rawValue: ds.format.rawValue),
              let tpl = DatasetSpec.Template(rawValue: ds.template.rawValue) else {
            throw TrainError.badJob("dataset: format \(ds.format.rawValue) or template \(ds.template.rawValue) is not one this trainer reads")
        }
        return DatasetSpec(path: resolve(ds.path, root: root), format: fmt, template: tpl, fields: fields,
                           promptTemplate: ds.promptTemplate, responseTemplate: ds.responseTemplate,
                           system: ds.system, valPath: ds.valPath.map { resolve($0, root: root) },
                           reasoningEffort: ds.reasoningEffort, date: ds.date,
                           valFraction: ds.valFraction, seed: UInt64(seed), maxSeqLen: maxSeqLen)
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
