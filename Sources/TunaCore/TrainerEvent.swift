import Foundation

/// The events Tuna's own trainers print, one JSON object per line (docs/trainer-contract.md §8),
/// as data: each kind, and the fields every event of that kind carries. The coordinator's job
/// summary reads these kinds; `contract/trainer-events.json` publishes them; the torch
/// trainer's emitter refuses an event outside them, and a test holds the native trainer to them.
/// Each trainer may add fields of its own (documented per trainer). A `command` trainer may print
/// anything: events of other kinds are stored and shown, not summarised.
public enum TrainerEvent {
    public enum Kind: String, CaseIterable, Sendable, Codable {
        case config, resumed, baseline, step, eval, checkpoint, done
        /// Trained to the job file's `pause_at_step`, evaluated and checkpointed there; the
        /// trainer then exits 0 without an adapter (ASHA's promotion mode).
        case paused
        case resumeFailed = "resume_failed", pruneProfile = "prune_profile", pruneEval = "prune_eval"
        /// One graded answer of a task evaluation (the job spec's `eval`): the prompt, the
        /// reference, what the model wrote and whether it was right.
        case sample

        /// The `event` field of a line of this kind.
        public var json: JSONValue { .string(rawValue) }
    }

    /// The fields every event of `kind` has (besides `event`).
    public static func required(_ kind: Kind) -> [String] {
        switch kind {
        case .config: return ["trainable_parameters", "train_examples", "validation_examples", "micro_batches_per_epoch", "steps", "warmup_steps"]
        case .resumed, .checkpoint, .paused: return ["step"]
        case .resumeFailed: return ["reason"]
        case .baseline: return ["loss"]
        case .step: return ["step", "epoch", "loss", "lr", "grad_norm", "tokens", "scored_tokens", "tokens_per_s"]
        case .eval: return ["loss", "tokens"]
        case .done: return ["seconds"]
        case .pruneProfile: return ["tokens", "cached"]
        case .sample: return ["step", "model", "index", "prompt", "reference", "final", "answer", "expected", "correct"]
        case .pruneEval: return ["keep", "loss", "tokens", "kl", "top1_agreement", "pruned_hit_share", "routing_mass_kept"]
        }
    }

    /// The kind of an event line, if it is one of Tuna's.
    public static func kind(of event: JSONValue) -> Kind? { event["event"]?.stringValue.flatMap(Kind.init(rawValue:)) }

    /// What is wrong with an event as one of Tuna's own trainers' (empty: nothing).
    public static func problems(_ event: JSONValue) -> [String] {
        guard let name = event["event"]?.stringValue else { return ["\(event): no `event` name"] }
        guard let kind = Kind(rawValue: name) else {
            return ["\(name): not one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))"]
        }
        return required(kind).filter { event[$0] == nil }.map { "\(name): no `\($0)`" }
    }

    /// `{kind: [required fields]}`: contract/trainer-events.json.
    public static var contract: JSONValue {
        .object(Dictionary(uniqueKeysWithValues: Kind.allCases.map { ($0.rawValue, .array(required($0).map(JSONValue.string))) }))
    }
}
