import Foundation

// Rows that queries return. Field names are the JSON names `tuna ... --json` prints.

public enum JobStatus: String, Codable, Sendable, CaseIterable {
    case queued, running, succeeded, failed, cancelled
    /// Ended early by its sweep's early-stopping rule (`sweep.early_stopping`): a decision
    /// about its results so far, not a failure and not a user's cancel.
    case stopped
    /// Trained to a rung of its sweep's ASHA in promotion mode, checkpointed, its worker handed
    /// back: waiting to be promoted (queued again, to resume from its checkpoint on any worker)
    /// or, once the sweep has nothing left to run, stopped.
    case paused
}

public struct SweepRow: Codable, Sendable {
    public var id: SweepID
    public var name: String
    public var created_ms: Int64
    public var varying: [String]
    public var jobs: Int
    public var queued: Int
    public var running: Int
    public var succeeded: Int
    public var failed: Int
    public var cancelled: Int
    /// Jobs ended by early stopping (absent from older coordinators: none).
    public var stopped: Int?
    /// What the sweep optimises (absent from coordinators before objectives: the default).
    public var objective: Objective?
    /// Jobs paused at a rung, waiting for promotion (absent from older coordinators: none).
    public var paused: Int?
    public init(id: SweepID, name: String, created_ms: Int64, varying: [String], jobs: Int, queued: Int, running: Int, succeeded: Int, failed: Int, cancelled: Int, stopped: Int? = nil, objective: Objective? = nil, paused: Int? = nil) {
        self.id = id; self.name = name; self.created_ms = created_ms; self.varying = varying; self.jobs = jobs; self.queued = queued; self.running = running; self.succeeded = succeeded; self.failed = failed; self.cancelled = cancelled; self.stopped = stopped; self.objective = objective; self.paused = paused
    }
}

public struct ResultRow: Codable, Sendable {
    public var id: JobID
    public var sweep: SweepID
    public var index: Int
    public var status: JobStatus
    public var attempts: Int
    /// The swept parameters of this job (the spec's varying fields).
    public var params: [String: JSONValue]
    public var final_train_loss: Double?
    public var best_val_loss: Double?
    public var final_val_loss: Double?
    public var tokens_per_s: Double?
    public var worker: String?
    public var adapter_sha256: String?
    public var error: String?
    /// Evaluation numbers beyond the loss (docs/protocol.md, `results`): `baseline_loss`, and a
    /// prune job's `kl`, `top1_agreement`, `pruned_hit_share`, `routing_mass_kept`, `general_*`
    /// from its last eval. Absent (nil) when a job has reported none.
    public var metrics: [String: Double]?
    /// The job's value of its sweep's objective (the metric at its last eval), if it has one.
    public var objective: Double?
    public init(id: JobID, sweep: SweepID, index: Int, status: JobStatus, attempts: Int, params: [String: JSONValue], final_train_loss: Double? = nil, best_val_loss: Double? = nil, final_val_loss: Double? = nil, tokens_per_s: Double? = nil, worker: String? = nil, adapter_sha256: String? = nil, error: String? = nil, metrics: [String: Double]? = nil, objective: Double? = nil) {
        self.id = id; self.sweep = sweep; self.index = index; self.status = status; self.attempts = attempts; self.params = params; self.final_train_loss = final_train_loss; self.best_val_loss = best_val_loss; self.final_val_loss = final_val_loss; self.tokens_per_s = tokens_per_s; self.worker = worker; self.adapter_sha256 = adapter_sha256; self.error = error; self.metrics = metrics; self.objective = objective
    }
}

public struct AttemptRow: Codable, Sendable {
    public var job: JobID
    public var attempt: Int
    public var worker: String
    public var state: String
    public var started_ms: Int64
    public var ended_ms: Int64?
    public var error: String?
    public init(job: JobID, attempt: Int, worker: String, state: String, started_ms: Int64, ended_ms: Int64? = nil, error: String? = nil) {
        self.job = job; self.attempt = attempt; self.worker = worker; self.state = state; self.started_ms = started_ms; self.ended_ms = ended_ms; self.error = error
    }
}

public struct JobDetail: Codable, Sendable {
    public var job: ResultRow
    public var attempts: [AttemptRow]
    public var artifacts: [ArtifactInfo]
    /// What the sweep's early-stopping rule decided about this job, oldest first (absent from
    /// older coordinators: none).
    public var decisions: [DecisionRow]?
    public init(job: ResultRow, attempts: [AttemptRow], artifacts: [ArtifactInfo], decisions: [DecisionRow]? = nil) {
        self.job = job; self.attempts = attempts; self.artifacts = artifacts; self.decisions = decisions
    }
}

/// One decision of a sweep's search about one job, with the values it was made from in words:
/// its early-stopping rule's (EarlyStopping's `explain`) or, for TPE, the proposal of its
/// configuration (rung 0).
public struct DecisionRow: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case paused, promoted, stopped, proposed }
    public var job: JobID
    public var kind: Kind
    /// The rung (training steps) the decision is about.
    public var rung: Int
    public var at_ms: Int64
    public var reason: String
    public init(job: JobID, kind: Kind, rung: Int, at_ms: Int64, reason: String) {
        self.job = job; self.kind = kind; self.rung = rung; self.at_ms = at_ms; self.reason = reason
    }
}

public struct EventRow: Codable, Sendable {
    public var attempt: Int
    public var seq: Int64
    public var at_ms: Int64
    public var event: JSONValue
    public init(attempt: Int, seq: Int64, at_ms: Int64, event: JSONValue) {
        self.attempt = attempt; self.seq = seq; self.at_ms = at_ms; self.event = event
    }
}

public struct WorkerRow: Codable, Sendable {
    public var id: String
    public var name: String
    public var capabilities: Capabilities
    public var connected: Bool
    public var last_seen_ms: Int64
    public var running: Int
    public var consecutive_failures: Int
    public var quarantined: Bool
    public var quarantine_reason: String?
    public init(id: String, name: String, capabilities: Capabilities, connected: Bool, last_seen_ms: Int64, running: Int, consecutive_failures: Int, quarantined: Bool, quarantine_reason: String? = nil) {
        self.id = id; self.name = name; self.capabilities = capabilities; self.connected = connected; self.last_seen_ms = last_seen_ms; self.running = running; self.consecutive_failures = consecutive_failures; self.quarantined = quarantined; self.quarantine_reason = quarantine_reason
    }
}
