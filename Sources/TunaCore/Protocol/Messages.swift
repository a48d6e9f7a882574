import Foundation

// Every message of the protocol, one Codable struct each. docs/protocol.md describes them in
// order; the wire form is a JSON object whose `type` names the message, with an `id` on
// requests and `re` (the request's id) on replies. See `Envelope`.

public typealias JobID = Int64
public typealias SweepID = Int64

/// A job's attempt: the attempt number is the fencing token that travels with every message
/// about that attempt, so a worker whose lease expired cannot finish the job afterwards.
public struct AttemptRef: Codable, Sendable, Hashable {
    public var job: JobID
    public var attempt: Int
    public init(job: JobID, attempt: Int) { self.job = job; self.attempt = attempt }
}

// MARK: Session

public struct Hello: Codable, Sendable {
    public var version: Int
    public var token: String?
    /// "worker" or "client" (the CLI).
    public var role: String
    /// The sender's release (`TunaVersion.current`), so that a refusal names both releases.
    /// Optional: a peer of release 0.4 sends none.
    public var tuna: String?
    public init(version: Int = ProtocolVersion.current, token: String?, role: String, tuna: String? = TunaVersion.current) {
        self.version = version; self.token = token; self.role = role; self.tuna = tuna
    }
}

public struct Welcome: Codable, Sendable {
    public var version: Int
    public var server: String
    /// The coordinator's release.
    public var tuna: String?
    public init(version: Int, server: String, tuna: String? = TunaVersion.current) {
        self.version = version; self.server = server; self.tuna = tuna
    }
}

public struct ErrorReply: Codable, Sendable, Error {
    /// A stable machine-readable code; `code.closesConnection` says whether the coordinator
    /// closes the connection after it (`ErrorCode`).
    public var code: ErrorCode
    public var message: String
    public init(code: ErrorCode, message: String) { self.code = code; self.message = message }
}

// MARK: Workers

public struct GPUInfo: Codable, Sendable, Hashable {
    /// nvidia-smi's index (the worker sets CUDA_DEVICE_ORDER=PCI_BUS_ID, so CUDA's agrees).
    public var index: Int
    public var name: String
    public var memory_gb: Double
    /// `GPU-...`: what the worker puts in a trainer's CUDA_VISIBLE_DEVICES, unambiguous under
    /// any device ordering. Optional (older workers, tests).
    public var uuid: String?
    /// The NVIDIA driver version.
    public var driver: String?
    public init(index: Int, name: String, memory_gb: Double, uuid: String? = nil, driver: String? = nil) {
        self.index = index; self.name = name; self.memory_gb = memory_gb; self.uuid = uuid; self.driver = driver
    }
}

public struct Capabilities: Codable, Sendable, Hashable {
    public var hostname: String
    public var trainers: [String]
    public var gpus: [GPUInfo]
    public var cpu_cores: Int
    public var ram_gb: Double
    public init(hostname: String, trainers: [String], gpus: [GPUInfo], cpu_cores: Int, ram_gb: Double) {
        self.hostname = hostname; self.trainers = trainers; self.gpus = gpus; self.cpu_cores = cpu_cores; self.ram_gb = ram_gb
    }
}

public struct Register: Codable, Sendable {
    public var worker_id: String
    public var name: String
    public var capabilities: Capabilities
    public var max_jobs: Int
    /// Attempts this worker is running now (after a reconnect), to re-attach to their leases.
    public var running: [AttemptRef]
    public init(worker_id: String, name: String, capabilities: Capabilities, max_jobs: Int, running: [AttemptRef]) {
        self.worker_id = worker_id; self.name = name; self.capabilities = capabilities; self.max_jobs = max_jobs; self.running = running
    }
}

extension Register {
    /// What a worker may call itself: its id names rows and files, its name is shown and
    /// logged, so neither may hold a path, a control character or a newline that would forge a
    /// log line. Ids follow the job-name rule; names are printable, at most 128 characters.
    public static func idProblem(_ id: String) -> String? {
        JobValidator.isValidName(id) ? nil : "worker id \(JSONValue.string(id)) is not a valid id (letters, digits, '.', '_', '-'; at most 128)"
    }

    public static func nameProblem(_ name: String) -> String? {
        let printable = !name.isEmpty && name.count <= 128
            && !name.unicodeScalars.contains { $0.properties.generalCategory == .control || $0 == "\u{2028}" || $0 == "\u{2029}" }
        return printable ? nil : "worker name \(JSONValue.string(name)) is not a valid name (1 to 128 printable characters)"
    }
}

public struct Registered: Codable, Sendable {
    public var lease_ms: Int64
    public var heartbeat_ms: Int64
    /// How often the worker pings: cheap liveness traffic, apart from the heartbeats that renew
    /// leases (and write to the database) only every `heartbeat_ms`.
    public var ping_ms: Int64
    /// Silence after which either side takes the connection for dead and closes it: the worker
    /// when no pong (or other reply) has come for this long, the coordinator when nothing at all
    /// has. A black-holed link is noticed within seconds, not at the TCP timeout's minutes.
    public var silence_ms: Int64
    /// Of the attempts the worker said it runs, those whose leases it still holds...
    public var reattached: [AttemptRef]
    /// ...and those it must stop (expired, cancelled, or superseded by a newer attempt).
    public var dropped: [AttemptRef]
    public var quarantined: Bool
    public init(lease_ms: Int64, heartbeat_ms: Int64, ping_ms: Int64, silence_ms: Int64, reattached: [AttemptRef], dropped: [AttemptRef], quarantined: Bool) {
        self.lease_ms = lease_ms; self.heartbeat_ms = heartbeat_ms; self.ping_ms = ping_ms; self.silence_ms = silence_ms
        self.reattached = reattached; self.dropped = dropped; self.quarantined = quarantined
    }
}

/// "Give me a job that fits these free resources." Long-polled: the coordinator answers
/// with a `lease` as soon as a fitting job is ready, however long that takes.
public struct JobRequest: Codable, Sendable {
    public var free_gpus: [GPUInfo]
    public var trainers: [String]
    public init(free_gpus: [GPUInfo], trainers: [String]) { self.free_gpus = free_gpus; self.trainers = trainers }
}

public struct ArtifactInfo: Codable, Sendable, Hashable {
    public var kind: String
    public var name: String
    public var sha256: String
    public var size: Int64
    public init(kind: String, name: String, sha256: String, size: Int64) {
        self.kind = kind; self.name = name; self.sha256 = sha256; self.size = size
    }
}

public struct Lease: Codable, Sendable {
    public var job: JobID
    public var attempt: Int
    public var sweep: SweepID
    public var spec: JSONValue
    public var lease_ms: Int64
    /// The checkpoint a previous attempt left, to be placed in TUNA_RESUME_DIR.
    public var resume: [ArtifactInfo]
    public init(job: JobID, attempt: Int, sweep: SweepID, spec: JSONValue, lease_ms: Int64, resume: [ArtifactInfo]) {
        self.job = job; self.attempt = attempt; self.sweep = sweep; self.spec = spec; self.lease_ms = lease_ms; self.resume = resume
    }
}

/// Liveness only: answered with `pong` (an empty reply) and never stored.
public struct Ping: Codable, Sendable {
    public init() {}
}

public struct Heartbeat: Codable, Sendable {
    public var leases: [AttemptRef]
    /// The worker's free GPUs now. They replace the parked `job_request`'s `free_gpus`: GPUs
    /// freed while a request was parked (a one-GPU job ended) can then take a job that needs
    /// more of them. Absent: the parked request stays as it is.
    public var free_gpus: [GPUInfo]?
    public init(leases: [AttemptRef], free_gpus: [GPUInfo]? = nil) { self.leases = leases; self.free_gpus = free_gpus }
}

public struct HeartbeatAck: Codable, Sendable {
    /// Leases the worker no longer holds: stop those trainers.
    public var lost: [AttemptRef]
    /// Whether the worker is quarantined now (so a lifted quarantine reaches it without a reconnect).
    public var quarantined: Bool?
    public init(lost: [AttemptRef], quarantined: Bool? = nil) {
        self.lost = lost; self.quarantined = quarantined
    }
}

/// Trainer events of one attempt, each with a per-attempt sequence number so that a batch
/// resent after a reconnect is stored once.
public struct Events: Codable, Sendable {
    public var job: JobID
    public var attempt: Int
    public var events: [EventRecord]
    public init(job: JobID, attempt: Int, events: [EventRecord]) { self.job = job; self.attempt = attempt; self.events = events }
}

public struct EventRecord: Codable, Sendable, Equatable {
    public var seq: Int64
    public var at_ms: Int64
    /// A trainer-contract event (`{"event":"step",...}`) or `{"event":"log","line":...}`.
    public var event: JSONValue
    public init(seq: Int64, at_ms: Int64, event: JSONValue) { self.seq = seq; self.at_ms = at_ms; self.event = event }
}

public struct EventsAck: Codable, Sendable {
    public var through_seq: Int64
    public init(through_seq: Int64) { self.through_seq = through_seq }
}

public struct JobDone: Codable, Sendable {
    public var job: JobID
    public var attempt: Int
    /// Set when the trainer stopped where the lease's job file asked (`pause_at_step`) and
    /// left a checkpoint there instead of an adapter: the job is paused, not succeeded.
    public var paused_at_step: Int?
    public init(job: JobID, attempt: Int, paused_at_step: Int? = nil) { self.job = job; self.attempt = attempt; self.paused_at_step = paused_at_step }
}

public struct JobFailed: Codable, Sendable {
    public var job: JobID
    public var attempt: Int
    public var reason: String
    /// Return to the queue without counting as a failure (SIGTERM on the worker, preemption).
    public var returned: Bool
    public init(job: JobID, attempt: Int, reason: String, returned: Bool) {
        self.job = job; self.attempt = attempt; self.reason = reason; self.returned = returned
    }
}

/// Pushed to a worker: stop this attempt (cancelled by a user, or the lease was lost).
public struct CancelAttempt: Codable, Sendable {
    public var job: JobID
    public var attempt: Int
    public var reason: String
    public init(job: JobID, attempt: Int, reason: String) {
        self.job = job; self.attempt = attempt; self.reason = reason
    }
}

// MARK: Artifacts

public struct UploadBegin: Codable, Sendable {
    public var job: JobID
    public var attempt: Int
    public var artifact: ArtifactInfo
    public init(job: JobID, attempt: Int, artifact: ArtifactInfo) { self.job = job; self.attempt = attempt; self.artifact = artifact }
}

public struct UploadReady: Codable, Sendable {
    public var upload: Int64
    /// Bytes already received and verified: resume from here.
    public var offset: Int64
    public init(upload: Int64, offset: Int64) {
        self.upload = upload; self.offset = offset
    }
}

/// Precedes one binary frame with `length` bytes at `offset` of the upload.
public struct UploadChunk: Codable, Sendable {
    public var upload: Int64
    public var offset: Int64
    public var length: Int
    public var sha256: String
    public init(upload: Int64, offset: Int64, length: Int, sha256: String) {
        self.upload = upload; self.offset = offset; self.length = length; self.sha256 = sha256
    }
}

public struct ChunkAck: Codable, Sendable {
    public var offset: Int64
    public init(offset: Int64) { self.offset = offset }
}

public struct UploadEnd: Codable, Sendable {
    public var upload: Int64
    public init(upload: Int64) { self.upload = upload }
}

public struct ReadArtifact: Codable, Sendable {
    public var sha256: String
    public var offset: Int64
    public var length: Int
    public init(sha256: String, offset: Int64, length: Int) { self.sha256 = sha256; self.offset = offset; self.length = length }
}

/// Reply to `read_artifact`; one binary frame follows it.
public struct ArtifactChunk: Codable, Sendable {
    public var offset: Int64
    public var length: Int
    public var sha256: String
    public var size: Int64
    public init(offset: Int64, length: Int, sha256: String, size: Int64) {
        self.offset = offset; self.length = length; self.sha256 = sha256; self.size = size
    }
}

// MARK: Queries and commands (the CLI)

public struct Submit: Codable, Sendable {
    public var spec: String
    public init(spec: String) { self.spec = spec }
}

public struct Submitted: Codable, Sendable {
    public var sweep: SweepID
    public var jobs: Int
    public init(sweep: SweepID, jobs: Int) {
        self.sweep = sweep; self.jobs = jobs
    }
}

/// `cancel`: a whole sweep's unfinished jobs, or one job.
public struct CancelRequest: Codable, Sendable {
    public var sweep: SweepID?
    public var job: JobID?
    public init(sweep: SweepID? = nil, job: JobID? = nil) { self.sweep = sweep; self.job = job }
}

/// `retry`: a sweep's failed and cancelled jobs, queued again.
/// `extend`: adds `count` jobs to a random or TPE sweep (drawing where it left off).
public struct ExtendSweep: Codable, Sendable {
    public var sweep: SweepID
    public var count: Int
    public init(sweep: SweepID, count: Int) { self.sweep = sweep; self.count = count }
}

public struct RetryRequest: Codable, Sendable {
    public var sweep: SweepID?
    public init(sweep: SweepID?) { self.sweep = sweep }
}

/// `job`: one job's detail.
public struct JobQuery: Codable, Sendable {
    public var job: JobID?
    public init(job: JobID) { self.job = job }
}

/// `list_sweeps`, `list_workers`: no parameters.
public struct ListSweeps: Codable, Sendable { public init() {} }
public struct ListWorkers: Codable, Sendable { public init() {} }

/// `audit`: the newest `limit` entries of the audit log (admin tokens only).
public struct AuditQuery: Codable, Sendable {
    public var limit: Int
    public init(limit: Int = 100) { self.limit = limit }
}

public struct AuditRow: Codable, Sendable, Equatable {
    public var at_ms: Int64
    /// The token's name, and its role.
    public var who: String
    public var role: String
    /// submit, cancel, retry or unquarantine.
    public var action: String
    public var target: String
    public var detail: String?
    public init(at_ms: Int64, who: String, role: String, action: String, target: String, detail: String?) {
        self.at_ms = at_ms; self.who = who; self.role = role; self.action = action; self.target = target; self.detail = detail
    }
}

/// `gc`: removes what retention no longer needs (admin tokens only; docs/operations.md).
public struct CollectGarbage: Codable, Sendable {
    /// Count what would go, remove nothing.
    public var dry_run: Bool
    /// Keep the checkpoints of succeeded attempts too.
    public var keep_succeeded_checkpoints: Bool
    public init(dry_run: Bool = false, keep_succeeded_checkpoints: Bool = false) {
        self.dry_run = dry_run; self.keep_succeeded_checkpoints = keep_succeeded_checkpoints
    }
}

public struct GarbageCollected: Codable, Sendable, Equatable {
    public var dry_run: Bool
    /// Artifact records and abandoned uploads removed (or that would be).
    public var artifact_records: Int
    public var uploads: Int
    /// Files removed from the data directory: contents nothing names any more, and part files.
    public var files: Int
    public var bytes_freed: Int64
    public init(dry_run: Bool, artifact_records: Int, uploads: Int, files: Int, bytes_freed: Int64) {
        self.dry_run = dry_run; self.artifact_records = artifact_records; self.uploads = uploads; self.files = files; self.bytes_freed = bytes_freed
    }
}

/// `status`: the coordinator's own health. No parameters.
public struct CoordinatorStatusQuery: Codable, Sendable { public init() {} }

public struct CoordinatorStatus: Codable, Sendable {
    /// The coordinator's release and protocol version.
    public var tuna: String
    public var `protocol`: Int
    public var started_ms: Int64
    public var connections: Int
    public var max_connections: Int
    public var data_dir: String
    /// Free bytes on the data directory's file system (nil if it cannot be read).
    public var free_bytes: Int64?
    /// Set while the coordinator's disk refuses writes: what it said, since when, how often.
    public var storage_problem: String?
    public var storage_problem_since_ms: Int64?
    public var storage_refusals: Int?
    public init(tuna: String, protocol: Int, started_ms: Int64, connections: Int, max_connections: Int, data_dir: String, free_bytes: Int64?,
                storage_problem: String? = nil, storage_problem_since_ms: Int64? = nil, storage_refusals: Int? = nil) {
        self.tuna = tuna; self.protocol = `protocol`; self.started_ms = started_ms; self.connections = connections; self.max_connections = max_connections
        self.data_dir = data_dir; self.free_bytes = free_bytes; self.storage_problem = storage_problem
        self.storage_problem_since_ms = storage_problem_since_ms; self.storage_refusals = storage_refusals
    }
}

public struct Count: Codable, Sendable {
    public var count: Int
    public init(count: Int) { self.count = count }
}

public struct Empty: Codable, Sendable { public init() {} }

public struct Unquarantine: Codable, Sendable {
    public var worker: String
    public init(worker: String) { self.worker = worker }
}

public struct ResultsQuery: Codable, Sendable {
    public var sweep: SweepID?
    public var sort: String?
    public init(sweep: SweepID? = nil, sort: String? = nil) { self.sweep = sweep; self.sort = sort }
}

/// `waiting`: why a sweep's (or every) queued job waits. `grouped`: one row per sweep and
/// reason, with the number of jobs (what `tuna submit` prints for a sweep of any size).
public struct WaitingQuery: Codable, Sendable {
    public var sweep: SweepID?
    public var grouped: Bool?
    public init(sweep: SweepID? = nil, grouped: Bool? = nil) { self.sweep = sweep; self.grouped = grouped }
}

public struct LogsQuery: Codable, Sendable {
    public var job: JobID
    public var attempt: Int?
    /// Only the events after this `seq` (what a follower has not seen yet).
    public var after_seq: Int64?
    public init(job: JobID, attempt: Int? = nil, afterSeq: Int64? = nil) { self.job = job; self.attempt = attempt; self.after_seq = afterSeq }
}

/// A list reply: `{"type": "results", "re": 3, "rows": [...]}`.
public struct Rows<T: Codable & Sendable>: Codable, Sendable {
    public var rows: [T]
    public init(_ rows: [T]) { self.rows = rows }
}

extension ErrorReply: CustomStringConvertible, LocalizedError {
    /// What a person reads (the CLI prints errors through this): the coordinator's message.
    public var description: String { message }
    public var errorDescription: String? { message }
}
