import Foundation

/// Checks one expanded job and fills in defaults. Pure: JSON in, (job, problems) out.
///
/// Every problem names the field, the value and what was expected, e.g.
/// `lora.rank: -4 is not a positive integer`. Unknown fields are errors for the built-in
/// trainers (a typo like `learning_rat` must not silently train with the default); the
/// `command` trainer passes every field it does not know through to its program.
public enum JobValidator {
    public static let trainers = ["native", "torch", "command"]
    public static let schedulers = ["constant", "linear", "cosine", "cosine_with_min_lr"]
    public static let datasetFormats = ["csv", "jsonl", "chat"]
    public static let templates = ["harmony", "im_start"]
    // No "router": transformers' gpt-oss router is a bare nn.Parameter, not an nn.Linear, so PEFT
    // cannot put a LoRA on it by module name; refusing it here beats failing on the worker.
    public static let moduleTargets = ["q_proj", "k_proj", "v_proj", "o_proj", "all-linear"]

    /// Letters, digits, '.', '_', '-'; starts with a letter or digit; at most 128.
    /// (Checked by hand: NSRegularExpression per job costs seconds on a 100,000-job sweep.)
    public static func isValidName(_ n: String) -> Bool {
        let u = Array(n.utf8)
        guard let first = u.first, u.count <= 128, isAlnum(first) else { return false }
        return u.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    /// `N.mlp.experts.gate_up_proj` or `N.mlp.experts.down_proj`.
    public static func isExpertParameter(_ s: String) -> Bool {
        for suffix in [".mlp.experts.gate_up_proj", ".mlp.experts.down_proj"] where s.hasSuffix(suffix) {
            let layer = s.dropLast(suffix.count)
            return !layer.isEmpty && layer.allSatisfy { $0.isASCII && $0.isNumber }
        }
        return false
    }

    private static func isAlnum(_ c: UInt8) -> Bool {
        (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)
    }

    public static func validate(_ spec: JSONValue) -> (job: JSONValue, problems: [String]) {
        var c = Checker(root: spec.objectValue ?? [:])
        c.check()
        return (.object(c.out), c.problems)
    }
}

/// The walk over one job's fields; collects problems rather than stopping at the first.
struct Checker {
    let root: [String: JSONValue]
    var out: [String: JSONValue] = [:]
    var problems: [String] = []

    init(root: [String: JSONValue]) { self.root = root }

    mutating func check() {
        let trainer = string("trainer", in: root, path: "trainer", required: true, oneOf: JobValidator.trainers)
        out["trainer"] = trainer.map(JSONValue.string) ?? .null
        out["name"] = string("name", in: root, path: "name", required: true).map(JSONValue.string) ?? .null
        if let n = out["name"]?.stringValue, !JobValidator.isValidName(n) {
            problems.append("name: \(JSONValue.string(n)) is not a valid name (letters, digits, '.', '_', '-'; at most 128)")
        }
        out["priority"] = .int(int("priority", in: root, path: "priority", default: 0, min: Int.min))
        out["max_attempts"] = .int(int("max_attempts", in: root, path: "max_attempts", default: 3, min: 1))
        out["resources"] = .object(resources(root["resources"]))

        if trainer == "command" {
            checkCommand()
            // Everything else goes through to the program as written.
            for (k, v) in root where out[k] == nil && k != "sweep" { out[k] = v }
            return
        }
        let known: Set<String> = ["name", "trainer", "task", "model", "dataset", "lora", "train", "prune", "torch", "resources",
                                  "priority", "max_attempts", "sweep", "command"]
        for k in root.keys.sorted() where !known.contains(k) {
            problems.append("\(k): unknown field (expected one of \(known.sorted().joined(separator: ", ")))")
        }
        if root["command"] != nil { problems.append("command: only the command trainer takes a command") }
        out["model"] = string("model", in: root, path: "model", required: true).map(JSONValue.string) ?? .null
        out["dataset"] = .object(dataset(root["dataset"]))
        // `task: prune` jobs cut experts instead of training an adapter; a LoRA job has no `task`
        // field in its stored form, so the hashes of LoRA jobs do not depend on this option.
        let task = string("task", in: root, path: "task", default: "lora", oneOf: ["lora", "prune"])
        // How the torch trainer computes applies to prune jobs too (the attention and experts
        // implementations of its forward passes), so torch jobs of either task get the section.
        if trainer == "torch" { out["torch"] = .object(torchSection(root["torch"])) }
        else if root["torch"] != nil { problems.append("torch: only torch jobs take a torch section") }
        if task == "prune" {
            // Both trainers run prune jobs: `tuna train` (native) and worker/tuna_torch (torch,
            // on the native trainer's own data from `tuna prepare`).
            out["task"] = "prune"
            for k in ["lora", "train"] where root[k] != nil { problems.append("\(k): a prune job takes no \(k) section (use prune)") }
            out["prune"] = .object(prune(root["prune"]))
            return
        }
        if root["prune"] != nil { problems.append("prune: only `task: prune` jobs take a prune section") }
        out["lora"] = .object(lora(root["lora"]))
        out["train"] = .object(train(root["train"]))
    }

    /// How the torch trainer computes (worker/README.md): each switch trades nothing in the
    /// loss (checked against the eager path) for speed; `auto` means the fast kernel on CUDA
    /// and the eager one elsewhere (flex attention's sinks need CUDA). `experts: mxfp4` keeps
    /// the expert weights MXFP4 on the GPU instead of dequantizing them (the memory choice).
    mutating func torchSection(_ v: JSONValue?) -> [String: JSONValue] {
        let o = section(v, "torch", keys: ["attention", "experts", "chunked_loss", "loss_chunk_rows"])
        return [
            "attention": .string(string("attention", in: o, path: "torch.attention", default: "auto", oneOf: ["auto", "eager", "flex_attention"])),
            "experts": .string(string("experts", in: o, path: "torch.experts", default: "auto", oneOf: ["auto", "eager", "grouped_mm", "mxfp4"])),
            "chunked_loss": .bool(bool("chunked_loss", in: o, path: "torch.chunked_loss", default: true)),
            "loss_chunk_rows": .int(int("loss_chunk_rows", in: o, path: "torch.loss_chunk_rows", default: 1024, min: 1)),
        ]
    }

    /// The prune section (docs/job-spec.md §2): how to score experts and how many to keep.
    mutating func prune(_ v: JSONValue?) -> [String: JSONValue] {
        if v == nil { problems.append("prune: required for `task: prune` (at least `keep`)"); return [:] }
        let o = section(v, "prune", keys: ["keep", "score", "keep_super_experts", "super_expert_ratio", "calibration_examples",
                                            "max_seq_len", "seed", "general", "also_evaluate", "write_checkpoint"])
        var p: [String: JSONValue] = [:]
        if o["keep"] == nil { problems.append("prune.keep: required (experts kept per layer)") }
        p["keep"] = .int(int("keep", in: o, path: "prune.keep", default: 1, min: 1))
        p["score"] = .string(string("score", in: o, path: "prune.score", default: "frequency", oneOf: ["frequency", "reap", "easy_ep"]))
        p["keep_super_experts"] = .bool(bool("keep_super_experts", in: o, path: "prune.keep_super_experts", default: true))
        p["super_expert_ratio"] = .number(number("super_expert_ratio", in: o, path: "prune.super_expert_ratio", default: 10, min: 1, exclusiveMin: true))
        p["calibration_examples"] = .int(int("calibration_examples", in: o, path: "prune.calibration_examples", default: 256, min: 1))
        p["max_seq_len"] = .int(int("max_seq_len", in: o, path: "prune.max_seq_len", default: 1024, min: 2))
        p["seed"] = .int(int("seed", in: o, path: "prune.seed", default: 42, min: 0))
        p["write_checkpoint"] = .bool(bool("write_checkpoint", in: o, path: "prune.write_checkpoint", default: true))
        if let g = o["general"] { p["general"] = .object(dataset(g, path: "prune.general")) }
        if let a = o["also_evaluate"] {
            if let items = a.arrayValue, items.allSatisfy({ ($0.intValue ?? 0) >= 1 }) { p["also_evaluate"] = a }
            else { problems.append("prune.also_evaluate: \(a) is not a list of positive integers") }
        }
        return p
    }

    // MARK: Sections

    mutating func checkCommand() {
        guard let cmd = root["command"] else { problems.append("command: required for the command trainer (an argv list)"); return }
        guard let argv = cmd.arrayValue, !argv.isEmpty, argv.allSatisfy({ $0.stringValue?.isEmpty == false }) else {
            problems.append("command: \(cmd) is not a non-empty list of strings (argv)")
            return
        }
        out["command"] = .array(argv)
    }

    mutating func resources(_ v: JSONValue?) -> [String: JSONValue] {
        let o = section(v, "resources", keys: ["gpus", "gpu_memory_gb", "cpu_cores", "ram_gb"])
        return [
            "gpus": .int(int("gpus", in: o, path: "resources.gpus", default: 0, min: 0)),
            "gpu_memory_gb": .number(number("gpu_memory_gb", in: o, path: "resources.gpu_memory_gb", default: 0, min: 0)),
            "cpu_cores": .int(int("cpu_cores", in: o, path: "resources.cpu_cores", default: 0, min: 0)),
            "ram_gb": .number(number("ram_gb", in: o, path: "resources.ram_gb", default: 0, min: 0)),
        ]
    }

    mutating func dataset(_ v: JSONValue?, path name: String = "dataset") -> [String: JSONValue] {
        if v == nil { problems.append("\(name): required (a mapping with at least `path`)"); return [:] }
        let o = section(v, name, keys: ["path", "format", "fields", "template", "prompt_template",
                                        "response_template", "system", "val_fraction", "val_path",
                                        "reasoning_effort", "date"])
        var d: [String: JSONValue] = [:]
        d["path"] = string("path", in: o, path: "\(name).path", required: true).map(JSONValue.string) ?? .null
        d["format"] = .string(string("format", in: o, path: "\(name).format", default: "jsonl", oneOf: JobValidator.datasetFormats))
        d["template"] = .string(string("template", in: o, path: "\(name).template", default: "harmony", oneOf: JobValidator.templates))
        d["val_fraction"] = .number(number("val_fraction", in: o, path: "\(name).val_fraction", default: 0.1, min: 0, below: 1))
        for k in ["prompt_template", "response_template", "system", "val_path", "reasoning_effort", "date"] {
            if let s = string(k, in: o, path: "\(name).\(k)") { d[k] = .string(s) }
        }
        if let f = o["fields"] {
            if let fo = f.objectValue, fo.values.allSatisfy({ $0.stringValue != nil }) { d["fields"] = f }
            else { problems.append("\(name).fields: \(f) is not a mapping of role to column name (e.g. {prompt: problem, response: solution})") }
        }
        return d
    }

    mutating func lora(_ v: JSONValue?) -> [String: JSONValue] {
        let o = section(v, "lora", keys: ["rank", "alpha", "dropout", "target_modules", "target_parameters", "use_rslora"])
        var l: [String: JSONValue] = [:]
        let rank = int("rank", in: o, path: "lora.rank", default: 8, min: 1)
        l["rank"] = .int(rank)
        l["alpha"] = .number(number("alpha", in: o, path: "lora.alpha", default: Double(2 * rank), min: 0, exclusiveMin: true))
        l["dropout"] = .number(number("dropout", in: o, path: "lora.dropout", default: 0, min: 0, below: 1))
        l["use_rslora"] = .bool(bool("use_rslora", in: o, path: "lora.use_rslora", default: false))

        var modules: [JSONValue] = ["q_proj", "k_proj", "v_proj", "o_proj"].map(JSONValue.string)
        if let m = o["target_modules"] {
            let items = m.stringValue.map { [JSONValue.string($0)] } ?? m.arrayValue
            if let items, items.allSatisfy({ $0.stringValue.map(JobValidator.moduleTargets.contains) == true }) {
                modules = items
            } else {
                problems.append("lora.target_modules: \(m) is not a list of \(JobValidator.moduleTargets.joined(separator: ", "))")
            }
        }
        l["target_modules"] = .array(modules)
        var params: [JSONValue] = []
        if let p = o["target_parameters"] {
            if let items = p.arrayValue, items.allSatisfy({ $0.stringValue.map(JobValidator.isExpertParameter) == true }) {
                params = items
            } else {
                problems.append("lora.target_parameters: \(p) is not a list like [\"7.mlp.experts.gate_up_proj\", \"7.mlp.experts.down_proj\"]")
            }
        }
        l["target_parameters"] = .array(params)
        return l
    }

    mutating func train(_ v: JSONValue?) -> [String: JSONValue] {
        let o = section(v, "train", keys: ["epochs", "learning_rate", "scheduler", "warmup_ratio", "batch_size",
                                            "grad_accum", "max_seq_len", "weight_decay", "adam_beta1", "adam_beta2",
                                            "adam_eps", "max_grad_norm", "seed", "min_lr_ratio", "eval_every_steps",
                                            "gradient_checkpointing", "max_steps", "checkpoint_every_steps", "packing"])
        var t: [String: JSONValue] = [:]
        t["epochs"] = .int(int("epochs", in: o, path: "train.epochs", default: 1, min: 1))
        t["learning_rate"] = .number(number("learning_rate", in: o, path: "train.learning_rate", default: 2e-4, min: 0, exclusiveMin: true))
        t["scheduler"] = .string(string("scheduler", in: o, path: "train.scheduler", default: "linear", oneOf: JobValidator.schedulers))
        t["warmup_ratio"] = .number(number("warmup_ratio", in: o, path: "train.warmup_ratio", default: 0, min: 0, max: 1))
        t["min_lr_ratio"] = .number(number("min_lr_ratio", in: o, path: "train.min_lr_ratio", default: 0.1, min: 0, max: 1))
        t["batch_size"] = .int(int("batch_size", in: o, path: "train.batch_size", default: 1, min: 1))
        t["grad_accum"] = .int(int("grad_accum", in: o, path: "train.grad_accum", default: 1, min: 1))
        t["max_seq_len"] = .int(int("max_seq_len", in: o, path: "train.max_seq_len", default: 1024, min: 1))
        t["weight_decay"] = .number(number("weight_decay", in: o, path: "train.weight_decay", default: 0, min: 0))
        t["adam_beta1"] = .number(number("adam_beta1", in: o, path: "train.adam_beta1", default: 0.9, min: 0, below: 1))
        t["adam_beta2"] = .number(number("adam_beta2", in: o, path: "train.adam_beta2", default: 0.999, min: 0, below: 1))
        t["adam_eps"] = .number(number("adam_eps", in: o, path: "train.adam_eps", default: 1e-8, min: 0, exclusiveMin: true))
        t["max_grad_norm"] = .number(number("max_grad_norm", in: o, path: "train.max_grad_norm", default: 1.0, min: 0))
        t["seed"] = .int(int("seed", in: o, path: "train.seed", default: 42, min: 0))
        t["eval_every_steps"] = .int(int("eval_every_steps", in: o, path: "train.eval_every_steps", default: 0, min: 0))
        t["max_steps"] = .int(int("max_steps", in: o, path: "train.max_steps", default: 0, min: 0))
        t["checkpoint_every_steps"] = .int(int("checkpoint_every_steps", in: o, path: "train.checkpoint_every_steps", default: 0, min: 0))
        t["gradient_checkpointing"] = .bool(bool("gradient_checkpointing", in: o, path: "train.gradient_checkpointing", default: false))
        t["packing"] = .bool(bool("packing", in: o, path: "train.packing", default: false))
        return t
    }
}
