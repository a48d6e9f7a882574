import Foundation

/// The job spec as data for the other language (contract/, written by `tuna contract --write`):
/// the Python trainer reads these files instead of copying Swift's defaults and allowed values.
///
///   job-spec/<case>.json   {"input": what a user writes, "validated": what every trainer gets}
///                          for each kind of job (the minimal input of each shows every default)
///   job-spec/enums.json    the allowed values of every enumerated field, by dotted path
///   job-file.json          what a worker writes to job.json: a validated spec and the run's
///                          identity and instructions (`JobSpec.attemptKeys`) at its top level
///   trainer-events.json    each kind of event Tuna's trainers print and its required fields
///   prepared-plan.json     each plan.json format `tuna prepare` writes and its fields
///
/// A test compares the committed folder with what this writes, so the folder cannot drift from
/// the Swift types; the Python tests load every validated case strictly.
public enum Contract {
    /// The cases: name -> input. Minimal inputs show the defaults; `lora-torch-every-field` sets
    /// every optional field, so the strict readers see each one at least once.
    public static let jobCases: [(name: String, input: JSONValue)] = [
        ("lora-native", ["name": "lora", "trainer": "native", "model": "models/tiny", "dataset": ["path": "data/train.jsonl"]]),
        ("lora-torch", ["name": "lora", "trainer": "torch", "model": "models/tiny", "dataset": ["path": "data/train.jsonl"]]),
        ("prune-native", ["name": "prune", "trainer": "native", "task": "prune", "model": "models/tiny",
                          "dataset": ["path": "data/train.jsonl"], "prune": ["keep": 16]]),
        ("prune-torch", ["name": "prune", "trainer": "torch", "task": "prune", "model": "models/tiny",
                         "dataset": ["path": "data/train.jsonl"], "prune": ["keep": 16]]),
        ("lora-native-dropout", ["name": "dropout", "trainer": "native", "model": "models/tiny", "dataset": ["path": "data/train.jsonl"],
                                 "lora": ["rank": 4, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]]]),
        ("command", ["name": "cmd", "trainer": "command", "command": ["python3", "train.py"], "learning_rate": 0.001]),
        ("lora-torch-every-field", [
            "name": "every-field", "trainer": "torch", "task": "lora", "priority": 5, "max_attempts": 2,
            "resources": ["gpus": 1, "gpu_memory_gb": 40, "cpu_cores": 8, "ram_gb": 64],
            "model": "models/tiny",
            "dataset": ["path": "data/train.csv", "format": "csv", "template": "harmony", "val_fraction": 0.2,
                        "fields": ["prompt": "problem", "response": "solution", "thinking": "analysis"],
                        "prompt_template": "Solve: {problem}", "response_template": "{solution}",
                        "system": "Be brief.", "val_path": "data/val.csv", "reasoning_effort": "high", "date": "2026-12-03"],
            "lora": ["rank": 16, "alpha": 32, "dropout": 0.0, "use_rslora": true, "target_modules": "all-linear",
                     "target_parameters": ["1.mlp.experts.gate_up_proj", "1.mlp.experts.down_proj"]],
            "train": ["epochs": 2, "learning_rate": 1e-4, "scheduler": "cosine_with_min_lr", "warmup_ratio": 0.05,
                      "min_lr_ratio": 0.2, "batch_size": 4, "grad_accum": 2, "max_seq_len": 2048, "weight_decay": 0.01,
                      "adam_beta1": 0.85, "adam_beta2": 0.99, "adam_eps": 1e-6, "max_grad_norm": 0.5, "seed": 7,
                      "eval_every_steps": 50, "max_steps": 500, "checkpoint_every_steps": 100,
                      "gradient_checkpointing": true, "packing": true],
            "torch": ["attention": "flex_attention", "experts": "mxfp4", "chunked_loss": false, "loss_chunk_rows": 512],
            "eval": ["generate": ["count": 32, "max_new_tokens": 512, "reasoning_effort": "medium", "temperature": 1.0,
                                  "top_p": 0.9, "top_k": 20, "seed": 1, "batch_size": 32],
                     "answer": ["extract": "boxed", "compare": "math"], "every_eval": false, "baseline": true],
        ]),
        ("lora-native-eval", ["name": "eval", "trainer": "native", "model": "models/tiny", "dataset": ["path": "data/train.jsonl"],
                              "eval": [:]]),
        ("lora-native-eval-every-field", [
            "name": "eval-every-field", "trainer": "native", "model": "models/tiny", "dataset": ["path": "data/math.jsonl"],
            "eval": ["generate": ["count": 16, "max_new_tokens": 256, "reasoning_effort": "low", "temperature": 0.7,
                                  "top_p": 0.95, "top_k": 40, "seed": 3, "batch_size": 4],
                     "answer": ["extract": "regex", "compare": "exact", "pattern": "#### (-?[0-9.,]+)"],
                     "every_eval": true, "baseline": false],
        ]),
        ("prune-native-every-field", [
            "name": "prune-every-field", "trainer": "native", "task": "prune", "model": "models/tiny",
            "dataset": ["path": "data/train.jsonl"],
            "prune": ["keep": 16, "score": "reap", "keep_super_experts": false, "super_expert_ratio": 5,
                      "calibration_examples": 64, "max_seq_len": 512, "seed": 1, "write_checkpoint": false,
                      "general": ["path": "data/general.jsonl", "format": "chat"], "also_evaluate": [8, 24]],
        ]),
    ]

    /// The allowed values of each enumerated field.
    public static var enums: JSONValue {
        func values<E: RawRepresentable & CaseIterable>(_: E.Type) -> JSONValue where E.RawValue == String {
            .array(E.allCases.map { .string($0.rawValue) })
        }
        return [
            "trainer": values(JobSpec.Trainer.self),
            "task": values(JobSpec.Task.self),
            "dataset.format": values(JobSpec.Dataset.Format.self),
            "dataset.template": values(JobSpec.Dataset.Template.self),
            "lora.target_modules": .array(JobSpec.LoRA.moduleTargets.map(JSONValue.string)),
            "train.scheduler": values(JobSpec.Train.Scheduler.self),
            "prune.score": values(JobSpec.Prune.Score.self),
            "torch.attention": values(JobSpec.Torch.Attention.self),
            "torch.experts": values(JobSpec.Torch.Experts.self),
            "eval.generate.reasoning_effort": values(JobSpec.Eval.Generate.ReasoningEffort.self),
            "eval.answer.extract": values(AnswerRule.Extract.self),
            "eval.answer.compare": values(AnswerRule.Compare.self),
        ]
    }

    /// Every file of the folder: relative path -> contents.
    public static func files() throws -> [String: String] {
        var out = ["job-spec/enums.json": enums.pretty() + "\n"]
        let torch = try JobValidator.spec(jobCases.first { $0.name == "lora-torch" }!.input)
        out["trainer-events.json"] = TrainerEvent.contract.pretty() + "\n"
        out["prepared-plan.json"] = PreparedPlan.contract.pretty() + "\n"
        out["job-file.json"] = JobSpec.jobFile(torch.json, job: 41, sweep: 7, attempt: 2, pauseAtStep: 90).pretty() + "\n"
        for c in jobCases {
            let spec = try JobValidator.spec(c.input)
            let doc: JSONValue = ["input": c.input, "validated": spec.json]
            out["job-spec/\(c.name).json"] = doc.pretty() + "\n"
        }
        return out
    }

    /// The files under `dir` that differ from (or are missing against) what `files()` writes,
    /// and the .json files anywhere under it that it would not write.
    public static func stale(in dir: URL) throws -> [String] {
        let want = try files()
        var bad = want.keys.filter { path in
            (try? String(contentsOf: dir.appendingPathComponent(path), encoding: .utf8)) != want[path]
        }
        let present = (FileManager.default.enumerator(atPath: dir.path)?.allObjects as? [String]) ?? []
        bad += present.filter { $0.hasSuffix(".json") && want[$0] == nil }
        return bad.sorted()
    }
}
