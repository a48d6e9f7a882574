import Foundation
import TunaCore
import TunaEngine
import TunaText

/// The native LoRA trainer: one job, start to finish, on the CPU engine.
///
///   load (tokenizer, data, model) → baseline eval → epochs of shuffled micro-batches,
///   `grad_accum` of them per optimizer step (gradients of the step's token-weighted mean loss),
///   clip, schedule, AdamW → eval every `eval_every_steps` and after each epoch → the adapter in
///   PEFT layout. Checkpoints (adapter + optimizer moments + step, one file, atomic) every
///   `checkpoint_every_steps` and when asked to stop; a resumed run rebuilds the same epochs
///   and dropout masks, so it continues the same loss curve.
public final class NativeTrainer {
    public typealias Emit = ([String: JSONValue]) -> Void

    let job: TrainJob
    let outputDir: URL
    let checkpointDir: URL?
    let resumeDir: URL?
    let emit: Emit
    let shouldStop: () -> Bool
    /// The job file's `pause_at_step`: train through this step (the schedule stays the whole
    /// run's), evaluate, checkpoint, print `paused` and return without an adapter.
    let pauseAtStep: Int?

    public init(job: TrainJob, outputDir: URL, checkpointDir: URL?, resumeDir: URL?,
                emit: @escaping Emit, shouldStop: @escaping () -> Bool = { false }, pauseAtStep: Int? = nil) {
        self.job = job; self.outputDir = outputDir; self.checkpointDir = checkpointDir; self.resumeDir = resumeDir
        self.emit = emit; self.shouldStop = shouldStop; self.pauseAtStep = pauseAtStep
    }

    public struct Summary: Sendable {
        public var steps: Int
        public var trainLoss: Double?
        public var baselineValLoss: Double?
        public var valLoss: Double?
        public var seconds: Double
        /// Set when the run paused at `pauseAtStep` (no adapter was written).
        public var pausedAt: Int?
    }

    public func run() throws -> Summary {
        let started = Date()
        let t = job.train
        let plan = try TrainingPlan(job: job)
        let data = plan.data
        let checkpoint = try GptOssCheckpoint(directory: URL(fileURLWithPath: job.modelPath))
        let model = try GptOssModel(checkpoint: checkpoint, residency: Self.residency(for: checkpoint))
        let (perEpoch, stepsPerEpoch, totalSteps, warmup, schedule) =
            (plan.microBatchesPerEpoch, plan.stepsPerEpoch, plan.totalSteps, plan.warmupSteps, plan.schedule)
        let validation = try Batching.validation(data.validation, batchSize: t.batchSize)

        var adapter = try LoRAAdapter.initialized(settings: job.lora, config: model.config, seed: UInt64(t.seed))
        var optimizer = AdamW(beta1: t.adamBeta1, beta2: t.adamBeta2, eps: t.adamEps, weightDecay: t.weightDecay)
        var step = 0
        if let resumeDir, let state = try TrainingCheckpoint.load(from: resumeDir, into: &adapter, optimizer: &optimizer, emit: emit) {
            step = state
            emit(["event": TrainerEvent.Kind.resumed.json, "step": .int(step)])
        }
        emit(["event": TrainerEvent.Kind.config.json, "trainable_parameters": .int(adapter.parameterCount), "train_examples": .int(data.train.count),
              "validation_examples": .int(data.validation.count), "micro_batches_per_epoch": .int(perEpoch),
              "steps": .int(totalSteps), "warmup_steps": .int(warmup), "truncated": .int(data.stats.truncated),
              "residency": .string(model.residency == .resident ? "resident" : "streaming"),
              "blas_threads": .int(BLAS.threads)])

        let task = try job.eval.map { try TaskEvaluation(job: job, settings: $0) }
        if task != nil, model.residency == .streaming {
            FileHandle.standardError.write(Data(("eval: the model is streamed (its fp32 layers take more than half of memory), so "
                + "generation dequantizes every layer at every token: expect the task evaluation to be slow\n").utf8))
        }
        var baseline: Double?
        if step == 0, !validation.isEmpty {
            baseline = try evaluate(model, adapter: nil, validation).loss
            var event: [String: JSONValue] = ["event": TrainerEvent.Kind.baseline.json, "loss": Self.number(baseline!), "step": 0]
            if let task, task.settings.baseline { event.merge(try task.run(model, adapter: nil, step: 0, emit: emit)) { $1 } }
            emit(event)
        }
        /// An eval event at `step`, with the task evaluation's figures when this eval has one.
        func evalEvent(_ loss: Double, tokens: Int, step: Int, final: Bool) throws -> [String: JSONValue] {
            var event: [String: JSONValue] = ["event": TrainerEvent.Kind.eval.json, "step": .int(step),
                                              "epoch": .number(Double(step) / Double(stepsPerEpoch)),
                                              "loss": Self.number(loss), "tokens": .int(tokens)]
            if let task, final || task.settings.everyEval {
                event.merge(try task.run(model, adapter: adapter, step: step, emit: emit)) { $1 }
            }
            return event
        }
        var lastTrain: Double?, lastVal: Double?
        var epochPlan: (epoch: Int, micro: [[[Int]]])? = nil
        if let pauseAtStep, step >= pauseAtStep, step < totalSteps {
            // Resumed at or past where this attempt is to pause: pause here, with the rung's eval.
            if !validation.isEmpty {
                let (v, n) = try evaluate(model, adapter: adapter, validation)
                emit(try evalEvent(v, tokens: n, step: step, final: false))
            }
            guard checkpointDir != nil else { throw TrainError.badJob("pause_at_step needs a checkpoint directory ($TUNA_CHECKPOINT_DIR)") }
            try saveCheckpoint(adapter, optimizer, step: step)
            emit(["event": TrainerEvent.Kind.paused.json, "step": .int(step)])
            return Summary(steps: step, trainLoss: nil, baselineValLoss: baseline, valLoss: nil,
                           seconds: Date().timeIntervalSince(started), pausedAt: step)
        }
        while step < totalSteps {
            if shouldStop() {
                try saveCheckpoint(adapter, optimizer, step: step)
                throw TrainError.interrupted(step: step)
            }
            let epoch = step / stepsPerEpoch
            if epochPlan?.epoch != epoch { epochPlan = (epoch, try plan.epochPlan(epoch)) }
            let all = epochPlan!.micro
            let first = (step % stepsPerEpoch) * t.gradAccum
            let micro = try all[first..<min(first + t.gradAccum, all.count)].map { try Batching.batch($0, data.train, packing: t.packing) }

            let stepStart = Date()
            let scored = micro.map { CrossEntropy.scoredCount($0) }.reduce(0, +)
            var grads = adapter.zeros(), lossSum = 0.0
            if scored > 0 {
                for (i, batch) in micro.enumerated() {
                    let seed = UInt64(t.seed) &* 0x2545_F491_4F6C_DD1D &+ UInt64(step) &* 131 &+ UInt64(i)
                    let r = try model.lossAndGradients(batch, adapter: adapter, recompute: t.gradientCheckpointing,
                                                       dropoutSeed: seed, lossScale: 1 / Double(scored))
                    guard r.tokens > 0 else { continue }
                    lossSum += r.loss * Double(r.tokens)
                    for (name, g) in r.gradients { grads[name] = Self.add(grads[name]!, g) }
                }
            }
            let loss = scored > 0 ? lossSum / Double(scored) : Double.nan
            let norm = GradientClipping.clip(&grads, maxNorm: t.maxGradNorm)
            let lr = schedule.rate(atStep: step)
            if scored > 0 { optimizer.step(&adapter, gradients: grads, learningRate: lr) }
            step += 1
            lastTrain = loss
            let seconds = Date().timeIntervalSince(stepStart)
            let tokens = micro.map(\.realTokens).reduce(0, +)
            emit(["event": TrainerEvent.Kind.step.json, "step": .int(step), "epoch": .number(Double(step) / Double(stepsPerEpoch)),
                  "loss": Self.number(loss), "lr": .number(lr), "grad_norm": Self.number(norm), "tokens": .int(tokens),
                  "scored_tokens": .int(scored), "tokens_per_s": .number(Double(tokens) / max(seconds, 1e-9)),
                  "peak_rss_mb": .int((Memory.peakRSS() ?? 0) / 1_048_576)])

            let endOfEpoch = step % stepsPerEpoch == 0 || step == totalSteps
            let pausing = step == pauseAtStep && step < totalSteps
            if !validation.isEmpty, endOfEpoch || pausing || (t.evalEverySteps > 0 && step % t.evalEverySteps == 0) {
                let (v, n) = try evaluate(model, adapter: adapter, validation)
                lastVal = v
                emit(try evalEvent(v, tokens: n, step: step, final: step == totalSteps))
            }
            if pausing {
                // The checkpoint is the next attempt's start: it resumes the same curve.
                guard checkpointDir != nil else { throw TrainError.badJob("pause_at_step needs a checkpoint directory ($TUNA_CHECKPOINT_DIR)") }
                try saveCheckpoint(adapter, optimizer, step: step)
                emit(["event": TrainerEvent.Kind.paused.json, "step": .int(step)])
                return Summary(steps: step, trainLoss: lastTrain, baselineValLoss: baseline, valLoss: lastVal,
                               seconds: Date().timeIntervalSince(started), pausedAt: step)
            }
            if t.checkpointEverySteps > 0, step % t.checkpointEverySteps == 0, step < totalSteps {
                try saveCheckpoint(adapter, optimizer, step: step)
            }
        }
        try adapter.save(directory: outputDir, baseModel: job.modelPath)
        let seconds = Date().timeIntervalSince(started)
        emit(["event": TrainerEvent.Kind.done.json, "steps": .int(step), "seconds": .number(seconds),
              "final_train_loss": lastTrain.map(Self.number) ?? .null, "final_val_loss": lastVal.map(Self.number) ?? .null,
              "baseline_val_loss": baseline.map(Self.number) ?? .null,
              "peak_rss_mb": .int((Memory.peakRSS() ?? 0) / 1_048_576)])
        return Summary(steps: step, trainLoss: lastTrain, baselineValLoss: baseline, valLoss: lastVal, seconds: seconds)
    }

    /// Token-weighted mean loss over the validation batches (no dropout).
    func evaluate(_ model: GptOssModel, adapter: LoRAAdapter?, _ batches: [Batch]) throws -> (loss: Double, tokens: Int) {
        var total = 0.0, count = 0
        for b in batches {
            let (l, n) = try model.loss(b, adapter: adapter)
            if n > 0 { total += l * Double(n); count += n }
        }
        return (count > 0 ? total / Double(count) : .nan, count)
    }

    func saveCheckpoint(_ adapter: LoRAAdapter, _ optimizer: AdamW, step: Int) throws {
        guard let checkpointDir else { return }
        try TrainingCheckpoint.save(adapter: adapter, optimizer: optimizer, step: step, to: checkpointDir)
        emit(["event": TrainerEvent.Kind.checkpoint.json, "step": .int(step)])
    }

    /// Resident (every layer converted to fp32 once) unless that would take more than half of
    /// physical memory; then streaming (one layer at a time, from the mapped checkpoint).
    static func residency(for checkpoint: GptOssCheckpoint) -> GptOssModel.Residency {
        let c = checkpoint.config
        let perLayer = c.hiddenSize * (c.numAttentionHeads + 2 * c.kvHeads) * c.resolvedHeadDim * 2
            + c.numLocalExperts * c.hiddenSize * c.intermediateSize * 3
        let bytes = 4 * (perLayer * c.numHiddenLayers + 2 * c.vocabSize * c.hiddenSize)
        return Double(bytes) < 0.5 * Double(ProcessInfo.processInfo.physicalMemory) ? .resident : .streaming
    }

    static func add(_ a: [Float], _ b: [Float]) -> [Float] {
        var out = a
        for i in 0..<out.count { out[i] += b[i] }
        return out
    }

    /// A JSON number, or null for NaN/inf (not JSON).
    static func number(_ x: Double) -> JSONValue { x.isFinite ? .number(x) : .null }
}

extension CrossEntropy {
    /// Scored (label != -100, shifted) positions of a batch.
    static func scoredCount(_ b: Batch) -> Int {
        guard let labels = b.labels else { return 0 }
        var n = 0
        for row in 0..<b.batchSize {
            for t in 1..<max(b.length, 1) where labels[row * b.length + t] != Batch.ignoreIndex { n += 1 }
        }
        return n
    }
}
