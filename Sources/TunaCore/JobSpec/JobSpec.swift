import Foundation

/// One job as every part of Tuna reads it (docs/job-spec.md): what `JobValidator` makes of a
/// sweep's expanded YAML, what the store keeps, what the worker writes to `job.json` and what
/// the trainers read. Every default of the job spec is written here, as a property's initial
/// value, and nowhere else: the validator starts from these values, the trainers read the
/// filled-in fields, and `contract/` publishes the result for the Python trainer
/// (`tuna contract`), which applies no defaults of its own.
///
/// The validated form is strict: decoding it (`JobSpec(json:)`) needs every field the validator
/// fills in, so a trainer never guesses a value the coordinator did not choose.
public struct JobSpec: Codable, Sendable, Hashable {
    public enum Trainer: String, Codable, Sendable, CaseIterable { case native, torch, command }
    public enum Task: String, Codable, Sendable, CaseIterable { case lora, prune }

    public var name: String
    public var trainer: Trainer
    public var priority = 0
    public var maxAttempts = 3
    public var resources = Resources()

    // The built-in trainers' job (native and torch).
    /// `lora` trains an adapter (the `lora` and `train` sections); `prune` cuts experts (`prune`).
    public var task: Task?
    public var model: String?
    public var dataset: Dataset?
    public var lora: LoRA?
    public var train: Train?
    public var prune: Prune?
    /// How the torch trainer computes; torch jobs only, of either task.
    public var torch: Torch?
    /// Task evaluation by generation (LoRA jobs; absent: none).
    public var eval: Eval?

    // The command trainer's job: its argv and every other field, passed through as written.
    public var command: [String]?
    public var extra: [String: JSONValue] = [:]

    public init(name: String, trainer: Trainer) { self.name = name; self.trainer = trainer }

    /// What a job needs of a worker to run; 0 means "no requirement".
    public struct Resources: Codable, Sendable, Hashable {
        public var gpus = 0
        public var gpuMemoryGB = 0.0
        public var cpuCores = 0
        public var ramGB = 0.0
        public init() {}
        enum CodingKeys: String, CodingKey, CaseIterable {
            case gpus, gpuMemoryGB = "gpu_memory_gb", cpuCores = "cpu_cores", ramGB = "ram_gb"
        }
    }

    /// The training data and how examples are rendered (docs/job-spec.md §1).
    public struct Dataset: Codable, Sendable, Hashable {
        public enum Format: String, Codable, Sendable, CaseIterable { case csv, jsonl, chat }
        public enum Template: String, Codable, Sendable, CaseIterable { case harmony, imStart = "im_start" }
        public var path: String
        public var format = Format.jsonl
        public var template = Template.harmony
        public var valFraction = 0.1
        /// The roles `fields` may name (each defaults to the column of the same name).
        public static let roles = ["prompt", "response", "system", "thinking", "messages"]
        /// Role -> column name (`roles`).
        public var fields: [String: String]?
        public var promptTemplate: String?
        public var responseTemplate: String?
        public var system: String?
        public var valPath: String?
        public var reasoningEffort: String?
        public var date: String?
        public init(path: String) { self.path = path }
        enum CodingKeys: String, CodingKey, CaseIterable {
            case path, format, template, fields, system, date
            case valFraction = "val_fraction", promptTemplate = "prompt_template", responseTemplate = "response_template"
            case valPath = "val_path", reasoningEffort = "reasoning_effort"
        }
    }

    public struct LoRA: Codable, Sendable, Hashable {
        /// What `target_modules` may name. No router: transformers' gpt-oss router is a bare
        /// nn.Parameter, not an nn.Linear, so PEFT cannot put a LoRA on it by module name.
        public static let moduleTargets = ["q_proj", "k_proj", "v_proj", "o_proj", "all-linear"]
        public var rank = 8
        /// Defaults to `defaultAlpha(rank:)`: the rule depends on the rank the job chose.
        public var alpha = LoRA.defaultAlpha(rank: 8)
        public var dropout = 0.0
        public var useRSLoRA = false
        public var targetModules = ["q_proj", "k_proj", "v_proj", "o_proj"]
        /// Expert parameters (`N.mlp.experts.gate_up_proj` / `down_proj`).
        public var targetParameters: [String] = []
        public init() {}
        public static func defaultAlpha(rank: Int) -> Double { Double(2 * rank) }
        enum CodingKeys: String, CodingKey, CaseIterable {
            case rank, alpha, dropout, useRSLoRA = "use_rslora", targetModules = "target_modules"
            case targetParameters = "target_parameters"
        }
    }

    public struct Train: Codable, Sendable, Hashable {
        public enum Scheduler: String, Codable, Sendable, CaseIterable {
            case constant, linear, cosine, cosineWithMinLR = "cosine_with_min_lr"
        }
        public var epochs = 1
        public var learningRate = 2e-4
        public var scheduler = Scheduler.linear
        public var warmupRatio = 0.0
        public var minLRRatio = 0.1
        public var batchSize = 1
        public var gradAccum = 1
        /// At least 2: a row of one token has nothing to predict.
        public var maxSeqLen = 1024
        public var weightDecay = 0.0
        public var adamBeta1 = 0.9
        public var adamBeta2 = 0.999
        public var adamEps = 1e-8
        public var maxGradNorm = 1.0
        public var seed = 42
        public var evalEverySteps = 0
        public var maxSteps = 0
        public var checkpointEverySteps = 0
        public var gradientCheckpointing = false
        public var packing = false
        public init() {}
        enum CodingKeys: String, CodingKey, CaseIterable {
            case epochs, scheduler, seed, packing
            case learningRate = "learning_rate", warmupRatio = "warmup_ratio", minLRRatio = "min_lr_ratio"
            case batchSize = "batch_size", gradAccum = "grad_accum", maxSeqLen = "max_seq_len", weightDecay = "weight_decay"
            case adamBeta1 = "adam_beta1", adamBeta2 = "adam_beta2", adamEps = "adam_eps", maxGradNorm = "max_grad_norm"
            case evalEverySteps = "eval_every_steps", maxSteps = "max_steps", checkpointEverySteps = "checkpoint_every_steps"
            case gradientCheckpointing = "gradient_checkpointing"
        }
    }

    /// `task: prune` (docs/job-spec.md §2): how to score experts and how many to keep.
    public struct Prune: Codable, Sendable, Hashable {
        public enum Score: String, Codable, Sendable, CaseIterable { case frequency, reap, easyEP = "easy_ep" }
        /// Experts kept per layer (required: no default).
        public var keep: Int
        public var score = Score.frequency
        public var keepSuperExperts = true
        public var superExpertRatio = 10.0
        public var calibrationExamples = 256
        public var maxSeqLen = 1024
        public var seed = 42
        public var writeCheckpoint = true
        /// A general-domain set to measure what pruning costs outside the job's own data.
        public var general: Dataset?
        /// Further N to evaluate by masking (no checkpoint written for them).
        public var alsoEvaluate: [Int]?
        public init(keep: Int) { self.keep = keep }
        enum CodingKeys: String, CodingKey, CaseIterable {
            case keep, score, seed, general
            case keepSuperExperts = "keep_super_experts", superExpertRatio = "super_expert_ratio"
            case calibrationExamples = "calibration_examples", maxSeqLen = "max_seq_len"
            case writeCheckpoint = "write_checkpoint", alsoEvaluate = "also_evaluate"
        }
    }

    /// How the torch trainer computes (worker/README.md). `auto`: the fast kernel on CUDA and
    /// the eager one elsewhere; `experts: mxfp4` keeps an MXFP4 checkpoint's experts packed.
    public struct Torch: Codable, Sendable, Hashable {
        public enum Attention: String, Codable, Sendable, CaseIterable { case auto, eager, flexAttention = "flex_attention" }
        public enum Experts: String, Codable, Sendable, CaseIterable { case auto, eager, groupedMM = "grouped_mm", mxfp4 }
        public var attention = Attention.auto
        public var experts = Experts.auto
        public var chunkedLoss = true
        public var lossChunkRows = 1024
        public init() {}
        enum CodingKeys: String, CodingKey, CaseIterable {
            case attention, experts, chunkedLoss = "chunked_loss", lossChunkRows = "loss_chunk_rows"
        }
    }

    /// `eval` (docs/job-spec.md §3): the model answers validation prompts and the answers are
    /// graded, at the end of training (and at every evaluation with `every_eval`), and once on
    /// the base model for the baseline. The job reports `exact_match` (the share graded
    /// correct) and `answered` (the share where an answer was found) in its eval events, and
    /// `baseline_exact_match`; each graded sample is a `sample` event (`tuna samples JOB`).
    public struct Eval: Codable, Sendable, Hashable {
        public var generate = Generate()
        public var answer = AnswerRule()
        public var everyEval = false
        public var baseline = true
        public init() {}
        enum CodingKeys: String, CodingKey, CaseIterable {
            case generate, answer, baseline, everyEval = "every_eval"
        }

        public struct Generate: Codable, Sendable, Hashable {
            public enum ReasoningEffort: String, Codable, Sendable, CaseIterable { case low, medium, high }
            /// Validation examples answered (the first `count` of the validation split).
            public var count = 64
            public var maxNewTokens = 512
            /// The harmony system message's effort for these prompts; nil: the data set's.
            public var reasoningEffort: ReasoningEffort?
            /// 0: greedy.
            public var temperature = 0.0
            public var topP = 1.0
            /// 0: no cut.
            public var topK = 0
            public var seed = 0
            /// Prompts decoded together.
            public var batchSize = 8
            public init() {}
            enum CodingKeys: String, CodingKey, CaseIterable {
                case count, temperature, seed
                case maxNewTokens = "max_new_tokens", reasoningEffort = "reasoning_effort", topP = "top_p", topK = "top_k"
                case batchSize = "batch_size"
            }
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, trainer, priority, resources, task, model, dataset, lora, train, prune, torch, command, eval
        case maxAttempts = "max_attempts"
    }

    /// The top-level fields of a `command` job that are the spec's own (every other field is the
    /// program's, in `extra`), and every top-level field a built-in trainer's job may have.
    static let commandFields: Set<String> = ["name", "trainer", "priority", "max_attempts", "resources", "command"]
    static let fields = Set(CodingKeys.allCases.map(\.rawValue))
}

// MARK: - The job file

extension JobSpec {
    /// The fields a lease adds at the top level of the validated spec: which run it is, and
    /// where the attempt is to pause (`pause_at_step`: train through that step with the
    /// schedule of the whole run, evaluate, checkpoint, print `paused`, exit 0; only in a sweep
    /// whose ASHA promotes). What the worker writes to job.json (docs/trainer-contract.md).
    /// Not part of the spec: a job's hash never covers them, and the validator takes them off a
    /// job file it is given.
    public static let attemptKeys: Set<String> = ["job_id", "sweep_id", "attempt", pauseAtStepKey]
    public static let pauseAtStepKey = "pause_at_step"

    /// The job file of one attempt: `spec` (the validated form), which job, sweep and attempt
    /// it is, and the step to pause at, if any.
    public static func jobFile(_ spec: JSONValue, job: Int, sweep: Int, attempt: Int, pauseAtStep: Int? = nil) -> JSONValue {
        var o = spec.objectValue ?? [:]
        o["job_id"] = .int(job); o["sweep_id"] = .int(sweep); o["attempt"] = .int(attempt)
        if let pauseAtStep { o[pauseAtStepKey] = .int(pauseAtStep) }
        return .object(o)
    }

    /// A job file's spec: the job file without the attempt's fields.
    public static func specOfJobFile(_ json: JSONValue) -> JSONValue {
        guard case .object(let o) = json else { return json }
        return .object(o.filter { !attemptKeys.contains($0.key) })
    }
}

// MARK: - The validated form

extension JobSpec {
    /// Decodes the validated form strictly: every field the validator fills in must be there
    /// (a missing one is an error naming it), and for the command trainer every other field
    /// goes to `extra`.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        trainer = try c.decode(Trainer.self, forKey: .trainer)
        priority = try c.decode(Int.self, forKey: .priority)
        maxAttempts = try c.decode(Int.self, forKey: .maxAttempts)
        resources = try c.decode(Resources.self, forKey: .resources)
        if trainer == .command {
            command = try c.decode([String].self, forKey: .command)
            let all = try decoder.singleValueContainer().decode([String: JSONValue].self)
            extra = all.filter { !JobSpec.commandFields.contains($0.key) }
            return
        }
        task = try c.decode(Task.self, forKey: .task)
        model = try c.decode(String.self, forKey: .model)
        dataset = try c.decode(Dataset.self, forKey: .dataset)
        if trainer == .torch { torch = try c.decode(Torch.self, forKey: .torch) }
        switch task {
        case .prune: prune = try c.decode(Prune.self, forKey: .prune)
        default:
            lora = try c.decode(LoRA.self, forKey: .lora)
            train = try c.decode(Train.self, forKey: .train)
            eval = try c.decodeIfPresent(Eval.self, forKey: .eval)
        }
    }

    public func encode(to encoder: Encoder) throws {
        if trainer == .command {
            var all = extra
            all["name"] = .string(name); all["trainer"] = .string(trainer.rawValue)
            all["priority"] = .int(priority); all["max_attempts"] = .int(maxAttempts)
            all["resources"] = try JSONValueEncoder().encode(resources)
            all["command"] = .array((command ?? []).map(JSONValue.string))
            var c = encoder.singleValueContainer()
            try c.encode(all)
            return
        }
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(trainer, forKey: .trainer)
        try c.encode(priority, forKey: .priority)
        try c.encode(maxAttempts, forKey: .maxAttempts)
        try c.encode(resources, forKey: .resources)
        try c.encodeIfPresent(task, forKey: .task)
        try c.encodeIfPresent(model, forKey: .model)
        try c.encodeIfPresent(dataset, forKey: .dataset)
        try c.encodeIfPresent(lora, forKey: .lora)
        try c.encodeIfPresent(train, forKey: .train)
        try c.encodeIfPresent(prune, forKey: .prune)
        try c.encodeIfPresent(torch, forKey: .torch)
        try c.encodeIfPresent(eval, forKey: .eval)
    }

    /// The validated form as JSON (what is hashed, stored, leased and written to job.json).
    public var json: JSONValue {
        // Every field is a plain value: encoding cannot fail.
        (try? JSONValueEncoder().encode(self)) ?? .null
    }

    /// Reads the validated form (job.json, a lease). Throws `TunaError.invalid` naming the
    /// first missing or mistyped field.
    public init(json: JSONValue) throws {
        do { self = try JSONDecoder().decode(JobSpec.self, from: json.jsonData) } catch let e as DecodingError {
            throw TunaError.invalid("job: \(JobSpec.describe(e)) (a validated job spec has every field; see contract/)")
        }
    }

    static func describe(_ e: DecodingError) -> String {
        func path(_ keys: [CodingKey]) -> String { keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") }
        switch e {
        case let .keyNotFound(key, ctx): return "\(path(ctx.codingPath + [key])): missing"
        case let .typeMismatch(_, ctx), let .valueNotFound(_, ctx): return "\(path(ctx.codingPath)): \(ctx.debugDescription)"
        case let .dataCorrupted(ctx): return "\(path(ctx.codingPath)): \(ctx.debugDescription)"
        @unknown default: return "\(e)"
        }
    }
}
