import Foundation
import TunaCore
import TunaEngine
import TunaText

/// Everything about a job's run that follows from the job alone: the tokenized data (split and
/// truncated), the step counts and the schedule. The native trainer runs it; `tuna prepare`
/// writes it out (with the batches of every epoch and the initial adapter) so the torch
/// trainer trains on exactly the same token ids, batches, order and initial weights.
public struct TrainingPlan {
    public let job: TrainJob
    public let data: LoadedDataset
    public let microBatchesPerEpoch: Int
    public let stepsPerEpoch: Int
    public let totalSteps: Int
    public let warmupSteps: Int
    public let schedule: LearningRateSchedule

    public init(job: TrainJob) throws {
        self.job = job
        let t = job.train
        let tokenizer: Tokenizer
        do { tokenizer = try Tokenizer.load(fromCheckpoint: URL(fileURLWithPath: job.modelPath)) } catch {
            throw TrainError.badData("tokenizer: \(error)")
        }
        do { data = try loadDataset(job.dataset, tokenizer: tokenizer) } catch { throw TrainError.badData("\(error)") }
        guard !data.train.isEmpty else { throw TrainError.badData("\(job.dataset.path): no training examples") }
        microBatchesPerEpoch = try Batching.epochPlan(data.train, epoch: 0, seed: t.seed, batchSize: t.batchSize,
                                                      packing: t.packing, rowLength: t.maxSeqLen).count
        stepsPerEpoch = (microBatchesPerEpoch + t.gradAccum - 1) / t.gradAccum
        totalSteps = t.maxSteps > 0 ? min(stepsPerEpoch * t.epochs, t.maxSteps) : stepsPerEpoch * t.epochs
        warmupSteps = LearningRateSchedule.warmupSteps(ratio: t.warmupRatio, totalSteps: totalSteps)
        schedule = try LearningRateSchedule(kind: t.scheduler.rawValue, peak: t.learningRate, warmupSteps: warmupSteps,
                                            totalSteps: totalSteps, minLRRatio: t.minLRRatio)
    }

    /// The micro-batches of optimizer step `step` (0-based) as example rows, and the epoch's plan
    /// they come from (cached by the caller).
    func epochPlan(_ epoch: Int) throws -> [[[Int]]] {
        let t = job.train
        return try Batching.epochPlan(data.train, epoch: epoch, seed: t.seed, batchSize: t.batchSize, packing: t.packing,
                                      rowLength: t.maxSeqLen)
    }

    /// Examples as JSON lines, `{"tokens": [...], "mask": [0|1, ...]}` each (what
    /// worker/tuna_torch/data.py reads; `PrunePlan` writes its rows the same way).
    static func jsonLines(_ examples: [RenderedExample]) -> Data {
        var out = ""
        for e in examples {
            out += "{\"tokens\":[" + e.tokens.map(String.init).joined(separator: ",") + "],\"mask\":["
                + e.lossMask.map { $0 ? "1" : "0" }.joined(separator: ",") + "]}\n"
        }
        return Data(out.utf8)
    }

    /// Writes the plan for another trainer:
    ///   train.jsonl, validation.jsonl  one example per line: {"tokens": [...], "mask": [0|1, ...]}
    ///   plan.json                      steps, schedule, and per optimizer step its micro-batches
    ///                                  (rows of train.jsonl line indices; several per row when packing)
    ///   init_adapter/                  the initial LoRA (PEFT layout), drawn exactly as the native trainer draws it
    public func write(to dir: URL) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Self.jsonLines(data.train).write(to: dir.appendingPathComponent("train.jsonl"))
        try Self.jsonLines(data.validation).write(to: dir.appendingPathComponent("validation.jsonl"))
        let t = job.train
        var steps: [JSONValue] = []
        var epoch = -1, plan: [[[Int]]] = []
        for step in 0..<totalSteps {
            if step / stepsPerEpoch != epoch { epoch = step / stepsPerEpoch; plan = try epochPlan(epoch) }
            let first = (step % stepsPerEpoch) * t.gradAccum
            let micro = plan[first..<min(first + t.gradAccum, plan.count)]
            steps.append(.array(micro.map { rows in .array(rows.map { .array($0.map { .int($0) }) }) }))
        }
        let doc: JSONValue = [
            "format": .string(PreparedPlan.lora.format), "packing": .bool(t.packing), "steps_per_epoch": .int(stepsPerEpoch),
            "total_steps": .int(totalSteps), "warmup_steps": .int(warmupSteps),
            "learning_rates": .array((0..<totalSteps).map { .number(schedule.rate(atStep: $0)) }),
            "steps": .array(steps),
        ]
        try Data(doc.canonicalJSON.utf8).write(to: dir.appendingPathComponent("plan.json"))
        let config = try GptOssConfig.load(from: URL(fileURLWithPath: job.modelPath).appendingPathComponent("config.json"))
        try LoRAAdapter.initialized(settings: job.lora, config: config, seed: UInt64(t.seed))
            .save(directory: dir.appendingPathComponent("init_adapter"), baseModel: job.modelPath)
    }
}
