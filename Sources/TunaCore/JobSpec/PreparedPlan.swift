/// What `tuna prepare` writes to plan.json for another trainer (the torch trainer reads it):
/// its format name and the fields it always has, per kind of job. `TrainingPlan` and
/// `PrunePlan` (TunaTrain) write exactly these (a test checks); contract/prepared-plan.json
/// publishes them, and the torch trainer refuses a plan of another format or missing a field.
public enum PreparedPlan {
    public struct Layout: Sendable {
        public let format: String
        public let fields: [String]
    }

    /// A LoRA job: the steps, their micro-batches (rows of train.jsonl) and learning rates.
    public static let lora = Layout(format: "tuna-plan-1", fields: [
        "format", "packing", "steps_per_epoch", "total_steps", "warmup_steps", "learning_rates", "steps",
    ])

    /// A prune job: the prune settings as the native runner resolved them, the N to evaluate
    /// in its order, and the row counts of calibration.jsonl, validation.jsonl, general.jsonl.
    public static let prune = Layout(format: "tuna-prune-plan-1", fields: [
        "format", "task", "keep", "also_evaluate", "evaluations", "score", "keep_super_experts", "super_expert_ratio",
        "calibration_examples", "max_seq_len", "write_checkpoint", "batch_size", "calibration_rows", "held_out_rows",
        "general_rows",
    ])

    /// eval.json, beside a LoRA job's plan when the job has an `eval` section: the prompts'
    /// token ids in order (the trainer answers them; `tuna grade` grades the replies), the
    /// tokens that end a reply, the texts that end one (a reply is complete once the decoded
    /// text of its last `stop_text_window` tokens contains one), and a padding id.
    public static let eval = Layout(format: "tuna-eval-1", fields: [
        "format", "prompts", "stop_tokens", "stop_texts", "stop_text_window", "pad_token",
    ])

    /// `{task: {"format": name, "fields": [...]}, "eval": ...}`: contract/prepared-plan.json.
    public static var contract: JSONValue {
        func layout(_ l: Layout) -> JSONValue { ["format": .string(l.format), "fields": .array(l.fields.map(JSONValue.string))] }
        return [JobSpec.Task.lora.rawValue: layout(lora), JobSpec.Task.prune.rawValue: layout(prune), "eval": layout(eval)]
    }
}
