import Foundation

/// Checks one expanded job and fills in defaults. Pure: JSON in, (spec, problems) out.
///
/// Every problem names the field, the value and what was expected, e.g.
/// `lora.rank: -4 is not a positive integer`. Unknown fields are errors for the built-in
/// trainers (a typo like `learning_rat` must not silently train with the default); the
/// `command` trainer passes every field it does not know through to its program. The
/// defaults are `JobSpec`'s: the walk starts from a default section and overwrites what the
/// job sets.
public enum JobValidator {
    /// Letters, digits, '.', '_', '-'; starts with a letter or digit; at most 128.
    /// (Checked by hand: NSRegularExpression per job costs seconds on a 100,000-job sweep.)
    public static func isValidName(_ n: String) -> Bool {
        let u = Array(n.utf8)
        guard let first = u.first, u.count <= 128, isAlnum(first) else { return false }
        return u.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    /// `N.mlp.experts.gate_up_proj` or `N.mlp.experts.down_proj` (layer N), or without the
    /// `N.` (every layer): the names the engine and PEFT both resolve.
    public static func isExpertParameter(_ s: String) -> Bool {
        for name in ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"] {
            if s == name { return true }
            guard s.hasSuffix("." + name) else { continue }
            let layer = s.dropLast(name.count + 1)
            return !layer.isEmpty && layer.allSatisfy { $0.isASCII && $0.isNumber }
        }
        return false
    }

    private static func isAlnum(_ c: UInt8) -> Bool {
        (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)
    }

    /// The job's spec with every default filled in, or (when `problems` is not empty) nil.
    public static func validate(_ spec: JSONValue) -> (spec: JobSpec?, problems: [String]) {
        var c = Checker(root: spec.objectValue ?? [:])
        let checked = c.check()
        return (c.problems.isEmpty ? checked : nil, c.problems)
    }

    /// One job from a user's file (`tuna train`, `tuna prepare`): validated, or an error
    /// listing every problem.
    public static func spec(_ json: JSONValue) throws -> JobSpec {
        let r = validate(json)
        guard let spec = r.spec else { throw TunaError.invalidSpec(r.problems) }
        return spec
    }
}

/// The walk over one job's fields; collects problems rather than stopping at the first.
/// A refused value keeps the default, so the walk goes on and finds the other problems.
struct Checker {
    let root: [String: JSONValue]
    var problems: [String] = []

    init(root: [String: JSONValue]) { self.root = root }

    mutating func check() -> JobSpec {
        let trainer = enumeration("trainer", in: root, path: "trainer", required: true, as: JobSpec.Trainer.self)
        let name = string("name", in: root, path: "name", required: true)
        if let name, !JobValidator.isValidName(name) {
            problems.append("name: \(JSONValue.string(name)) is not a valid name (letters, digits, '.', '_', '-'; at most 128)")
        }
        var job = JobSpec(name: name ?? "", trainer: trainer ?? .command)
        job.priority = int("priority", in: root, path: "priority", default: job.priority, min: Int.min)
        job.maxAttempts = int("max_attempts", in: root, path: "max_attempts", default: job.maxAttempts, min: 1)
        job.resources = resources(root["resources"])

        if trainer == .command {
            job.command = command()
            // Everything else goes through to the program as written.
            job.extra = root.filter { !JobSpec.commandFields.contains($0.key) && !SweepSpec.sweepSections.contains($0.key) }
            return job
        }
        let unknown = root.keys.filter { !JobSpec.fields.contains($0) && !SweepSpec.sweepSections.contains($0) }
        for k in unknown.sorted() {
            problems.append("\(k): unknown field (expected one of \(JobSpec.fields.union(SweepSpec.sweepSections).sorted().joined(separator: ", ")))")
        }
        if root["command"] != nil { problems.append("command: only the command trainer takes a command") }
        job.model = string("model", in: root, path: "model", required: true) ?? ""
        job.dataset = dataset(root["dataset"])
        let task = enumeration("task", in: root, path: "task", as: JobSpec.Task.self) ?? .lora
        job.task = task
        // How the torch trainer computes applies to prune jobs too (the attention and experts
        // implementations of its forward passes), so torch jobs of either task get the section.
        if trainer == .torch { job.torch = torchSection(root["torch"]) }
        else if root["torch"] != nil { problems.append("torch: only torch jobs take a torch section") }
        if task == .prune {
            // Both trainers run prune jobs: `tuna train` (native) and worker/tuna_torch (torch,
            // on the native trainer's own data from `tuna prepare`).
            for k in ["lora", "train", "eval"] where root[k] != nil { problems.append("\(k): a prune job takes no \(k) section (use prune)") }
            job.prune = prune(root["prune"])
            return job
        }
        if root["prune"] != nil { problems.append("prune: only `task: prune` jobs take a prune section") }
        job.lora = lora(root["lora"])
        job.train = train(root["train"])
        if let e = root["eval"] {
            job.eval = evalSection(e)
            if let ev = job.eval, let d = job.dataset {
                if d.valFraction == 0, d.valPath == nil {
                    problems.append("eval: the data set has no validation split to answer (dataset.val_fraction is 0 and there is no dataset.val_path)")
                }
                if ev.generate.reasoningEffort != nil, d.template != .harmony {
                    problems.append("eval.generate.reasoning_effort: only the harmony template has a reasoning effort (dataset.template is \(d.template.rawValue))")
                }
            }
        }
        return job
    }

    /// The task evaluation (docs/job-spec.md §3).
    mutating func evalSection(_ v: JSONValue) -> JobSpec.Eval {
        let o = section(v, "eval", keys: JobSpec.Eval.CodingKeys.self)
        var e = JobSpec.Eval()
        e.everyEval = bool("every_eval", in: o, path: "eval.every_eval", default: e.everyEval)
        e.baseline = bool("baseline", in: o, path: "eval.baseline", default: e.baseline)
        let g = section(o["generate"], "eval.generate", keys: JobSpec.Eval.Generate.CodingKeys.self)
        e.generate.count = int("count", in: g, path: "eval.generate.count", default: e.generate.count, min: 1)
        e.generate.maxNewTokens = int("max_new_tokens", in: g, path: "eval.generate.max_new_tokens", default: e.generate.maxNewTokens, min: 1)
        e.generate.reasoningEffort = enumeration("reasoning_effort", in: g, path: "eval.generate.reasoning_effort",
                                                 as: JobSpec.Eval.Generate.ReasoningEffort.self)
        e.generate.temperature = number("temperature", in: g, path: "eval.generate.temperature", default: e.generate.temperature, min: 0)
        e.generate.topP = number("top_p", in: g, path: "eval.generate.top_p", default: e.generate.topP, min: 0, exclusiveMin: true, max: 1)
        e.generate.topK = int("top_k", in: g, path: "eval.generate.top_k", default: e.generate.topK, min: 0)
        e.generate.seed = int("seed", in: g, path: "eval.generate.seed", default: e.generate.seed, min: 0)
        e.generate.batchSize = int("batch_size", in: g, path: "eval.generate.batch_size", default: e.generate.batchSize, min: 1)
        let a = section(o["answer"], "eval.answer", keys: AnswerRule.CodingKeys.self)
        e.answer.extract = enumeration("extract", in: a, path: "eval.answer.extract", as: AnswerRule.Extract.self) ?? e.answer.extract
        e.answer.compare = enumeration("compare", in: a, path: "eval.answer.compare", as: AnswerRule.Compare.self) ?? e.answer.compare
        e.answer.pattern = string("pattern", in: a, path: "eval.answer.pattern")
        if let problem = e.answer.problem { problems.append("eval.answer: \(problem)") }
        return e
    }

    /// How the torch trainer computes (worker/README.md): each switch trades nothing in the
    /// loss (checked against the eager path) for speed.
    mutating func torchSection(_ v: JSONValue?) -> JobSpec.Torch {
        let o = section(v, "torch", keys: JobSpec.Torch.CodingKeys.self)
        var t = JobSpec.Torch()
        t.attention = enumeration("attention", in: o, path: "torch.attention", as: JobSpec.Torch.Attention.self) ?? t.attention
        t.experts = enumeration("experts", in: o, path: "torch.experts", as: JobSpec.Torch.Experts.self) ?? t.experts
        t.chunkedLoss = bool("chunked_loss", in: o, path: "torch.chunked_loss", default: t.chunkedLoss)
        t.lossChunkRows = int("loss_chunk_rows", in: o, path: "torch.loss_chunk_rows", default: t.lossChunkRows, min: 1)
        return t
    }

    /// The prune section (docs/job-spec.md §2): how to score experts and how many to keep.
    mutating func prune(_ v: JSONValue?) -> JobSpec.Prune {
        if v == nil { problems.append("prune: required for `task: prune` (at least `keep`)"); return JobSpec.Prune(keep: 1) }
        let o = section(v, "prune", keys: JobSpec.Prune.CodingKeys.self)
        if o["keep"] == nil { problems.append("prune.keep: required (experts kept per layer)") }
        var p = JobSpec.Prune(keep: int("keep", in: o, path: "prune.keep", default: 1, min: 1))
        p.score = enumeration("score", in: o, path: "prune.score", as: JobSpec.Prune.Score.self) ?? p.score
        p.keepSuperExperts = bool("keep_super_experts", in: o, path: "prune.keep_super_experts", default: p.keepSuperExperts)
        p.superExpertRatio = number("super_expert_ratio", in: o, path: "prune.super_expert_ratio", default: p.superExpertRatio, min: 1, exclusiveMin: true)
        p.calibrationExamples = int("calibration_examples", in: o, path: "prune.calibration_examples", default: p.calibrationExamples, min: 1)
        p.maxSeqLen = int("max_seq_len", in: o, path: "prune.max_seq_len", default: p.maxSeqLen, min: 2)
        p.seed = int("seed", in: o, path: "prune.seed", default: p.seed, min: 0)
        p.writeCheckpoint = bool("write_checkpoint", in: o, path: "prune.write_checkpoint", default: p.writeCheckpoint)
        if let g = o["general"] { p.general = dataset(g, path: "prune.general") }
        if let a = o["also_evaluate"] {
            if let items = a.arrayValue?.compactMap(\.intValue), items.count == a.arrayValue?.count, items.allSatisfy({ $0 >= 1 }) {
                p.alsoEvaluate = items
            } else { problems.append("prune.also_evaluate: \(a) is not a list of positive integers") }
        }
        return p
    }

    // MARK: Sections

    mutating func command() -> [String] {
        guard let cmd = root["command"] else { problems.append("command: required for the command trainer (an argv list)"); return [] }
        guard let argv = cmd.arrayValue?.compactMap(\.stringValue), argv.count == cmd.arrayValue?.count,
              !argv.isEmpty, argv.allSatisfy({ !$0.isEmpty }) else {
            problems.append("command: \(cmd) is not a non-empty list of strings (argv)")
            return []
        }
        return argv
    }

    mutating func resources(_ v: JSONValue?) -> JobSpec.Resources {
        let o = section(v, "resources", keys: JobSpec.Resources.CodingKeys.self)
        var r = JobSpec.Resources()
        r.gpus = int("gpus", in: o, path: "resources.gpus", default: r.gpus, min: 0)
        r.gpuMemoryGB = number("gpu_memory_gb", in: o, path: "resources.gpu_memory_gb", default: r.gpuMemoryGB, min: 0)
        r.cpuCores = int("cpu_cores", in: o, path: "resources.cpu_cores", default: r.cpuCores, min: 0)
        r.ramGB = number("ram_gb", in: o, path: "resources.ram_gb", default: r.ramGB, min: 0)
        return r
    }

    mutating func dataset(_ v: JSONValue?, path name: String = "dataset") -> JobSpec.Dataset {
        if v == nil { problems.append("\(name): required (a mapping with at least `path`)"); return JobSpec.Dataset(path: "") }
        let o = section(v, name, keys: JobSpec.Dataset.CodingKeys.self)
        var d = JobSpec.Dataset(path: string("path", in: o, path: "\(name).path", required: true) ?? "")
        d.format = enumeration("format", in: o, path: "\(name).format", as: JobSpec.Dataset.Format.self) ?? d.format
        d.template = enumeration("template", in: o, path: "\(name).template", as: JobSpec.Dataset.Template.self) ?? d.template
        d.valFraction = number("val_fraction", in: o, path: "\(name).val_fraction", default: d.valFraction, min: 0, below: 1)
        d.promptTemplate = string("prompt_template", in: o, path: "\(name).prompt_template")
        d.responseTemplate = string("response_template", in: o, path: "\(name).response_template")
        d.system = string("system", in: o, path: "\(name).system")
        d.valPath = string("val_path", in: o, path: "\(name).val_path")
        d.reasoningEffort = string("reasoning_effort", in: o, path: "\(name).reasoning_effort")
        d.date = string("date", in: o, path: "\(name).date")
        if let f = o["fields"] {
            if let fo = f.objectValue, fo.values.allSatisfy({ $0.stringValue != nil }) {
                d.fields = fo.compactMapValues(\.stringValue)
                // A typo must not silently fall back to the default column.
                for role in fo.keys.sorted() where !JobSpec.Dataset.roles.contains(role) {
                    problems.append("\(name).fields: unknown role \(JSONValue.string(role)) (expected one of \(JobSpec.Dataset.roles.joined(separator: ", ")))")
                }
            } else { problems.append("\(name).fields: \(f) is not a mapping of role to column name (e.g. {prompt: problem, response: solution})") }
        }
        return d
    }

    mutating func lora(_ v: JSONValue?) -> JobSpec.LoRA {
        let o = section(v, "lora", keys: JobSpec.LoRA.CodingKeys.self)
        var l = JobSpec.LoRA()
        l.rank = int("rank", in: o, path: "lora.rank", default: l.rank, min: 1)
        l.alpha = number("alpha", in: o, path: "lora.alpha", default: JobSpec.LoRA.defaultAlpha(rank: l.rank), min: 0, exclusiveMin: true)
        l.dropout = number("dropout", in: o, path: "lora.dropout", default: l.dropout, min: 0, below: 1)
        l.useRSLoRA = bool("use_rslora", in: o, path: "lora.use_rslora", default: l.useRSLoRA)
        if let m = o["target_modules"] {
            let items = m.stringValue.map { [$0] } ?? m.arrayValue?.compactMap(\.stringValue)
            if let items, items.count == (m.arrayValue?.count ?? 1), items.allSatisfy(JobSpec.LoRA.moduleTargets.contains) {
                l.targetModules = items
            } else {
                problems.append("lora.target_modules: \(m) is not a list of \(JobSpec.LoRA.moduleTargets.joined(separator: ", "))")
            }
        }
        if let p = o["target_parameters"] {
            if let items = p.arrayValue?.compactMap(\.stringValue), items.count == p.arrayValue?.count,
               items.allSatisfy(JobValidator.isExpertParameter) {
                l.targetParameters = items
            } else {
                problems.append("lora.target_parameters: \(p) is not a list like [\"7.mlp.experts.gate_up_proj\", \"7.mlp.experts.down_proj\"]")
            }
        }
        // What the trainers would refuse on the worker, refused at submission instead.
        if l.dropout > 0, !l.targetParameters.isEmpty {
            // peft 0.21's ParamWrapper raises on lora_dropout != 0 (LoRASettings refuses it too).
            problems.append("lora.dropout: PEFT cannot apply dropout to expert parameters (target_parameters); set lora.dropout: 0 or drop target_parameters")
        }
        if l.targetModules.isEmpty, l.targetParameters.isEmpty {
            problems.append("lora: no target_modules and no target_parameters; nothing to train")
        }
        return l
    }

    mutating func train(_ v: JSONValue?) -> JobSpec.Train {
        let o = section(v, "train", keys: JobSpec.Train.CodingKeys.self)
        var t = JobSpec.Train()
        t.epochs = int("epochs", in: o, path: "train.epochs", default: t.epochs, min: 1)
        t.learningRate = number("learning_rate", in: o, path: "train.learning_rate", default: t.learningRate, min: 0, exclusiveMin: true)
        t.scheduler = enumeration("scheduler", in: o, path: "train.scheduler", as: JobSpec.Train.Scheduler.self) ?? t.scheduler
        t.warmupRatio = number("warmup_ratio", in: o, path: "train.warmup_ratio", default: t.warmupRatio, min: 0, max: 1)
        t.minLRRatio = number("min_lr_ratio", in: o, path: "train.min_lr_ratio", default: t.minLRRatio, min: 0, max: 1)
        t.batchSize = int("batch_size", in: o, path: "train.batch_size", default: t.batchSize, min: 1)
        t.gradAccum = int("grad_accum", in: o, path: "train.grad_accum", default: t.gradAccum, min: 1)
        t.maxSeqLen = int("max_seq_len", in: o, path: "train.max_seq_len", default: t.maxSeqLen, min: 2)
        t.weightDecay = number("weight_decay", in: o, path: "train.weight_decay", default: t.weightDecay, min: 0)
        t.adamBeta1 = number("adam_beta1", in: o, path: "train.adam_beta1", default: t.adamBeta1, min: 0, below: 1)
        t.adamBeta2 = number("adam_beta2", in: o, path: "train.adam_beta2", default: t.adamBeta2, min: 0, below: 1)
        t.adamEps = number("adam_eps", in: o, path: "train.adam_eps", default: t.adamEps, min: 0, exclusiveMin: true)
        t.maxGradNorm = number("max_grad_norm", in: o, path: "train.max_grad_norm", default: t.maxGradNorm, min: 0)
        t.seed = int("seed", in: o, path: "train.seed", default: t.seed, min: 0)
        t.evalEverySteps = int("eval_every_steps", in: o, path: "train.eval_every_steps", default: t.evalEverySteps, min: 0)
        t.maxSteps = int("max_steps", in: o, path: "train.max_steps", default: t.maxSteps, min: 0)
        t.checkpointEverySteps = int("checkpoint_every_steps", in: o, path: "train.checkpoint_every_steps", default: t.checkpointEverySteps, min: 0)
        t.gradientCheckpointing = bool("gradient_checkpointing", in: o, path: "train.gradient_checkpointing", default: t.gradientCheckpointing)
        t.packing = bool("packing", in: o, path: "train.packing", default: t.packing)
        return t
    }
}
