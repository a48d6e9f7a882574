/// Every message type on the wire (docs/protocol.md), written once. A peer may still send a
/// name that is not here (an older or newer peer, a fuzzer): `Incoming.type` keeps the string,
/// and the coordinator answers `unknown_type`.
public enum MessageType: String, CaseIterable, Sendable, Codable {
    // Both roles
    case hello, welcome, error, ok
    /// Liveness: either side's silence is noticed within seconds (Registered.silence_ms).
    case ping, pong
    // Worker -> coordinator, and the replies
    case register, registered
    case jobRequest = "job_request", lease
    case heartbeat, heartbeatAck = "heartbeat_ack"
    case events, eventsAck = "events_ack"
    case uploadBegin = "upload_begin", uploadReady = "upload_ready"
    case uploadChunk = "upload_chunk", chunkAck = "chunk_ack"
    case uploadEnd = "upload_end"
    case jobDone = "job_done", jobFailed = "job_failed"
    // Coordinator -> worker, unasked
    case cancel
    // Client -> coordinator, and the replies
    case submit, submitted
    case listSweeps = "list_sweeps", sweeps
    case results, job, logs, waiting, count
    case readArtifact = "read_artifact", artifactChunk = "artifact_chunk"
    case retry
    case extend
    case listWorkers = "list_workers", workers
    case unquarantine
    case status
    case audit
    case gc, collected

    /// What only a registered worker may send.
    public var isWorkerOnly: Bool {
        switch self {
        case .register, .jobRequest, .heartbeat, .events, .uploadBegin, .uploadChunk, .uploadEnd, .jobDone, .jobFailed: return true
        default: return false
        }
    }
}

/// A message that expects a reply: its type, and the type and payload of its reply. A client
/// sends one with `WireClient.send` and gets `Reply` back; the coordinator's routes are keyed
/// by `type`. (`cancel` is both the client's request and the coordinator's push to a worker,
/// with different payloads: `CancelRequest` and `CancelAttempt`.)
public protocol Request: Encodable, Sendable {
    associatedtype Reply: Codable & Sendable
    static var type: MessageType { get }
    static var replyType: MessageType { get }
}

extension Hello: Request { public typealias Reply = Welcome; public static let type = MessageType.hello; public static let replyType = MessageType.welcome }
extension Ping: Request { public typealias Reply = Empty; public static let type = MessageType.ping; public static let replyType = MessageType.pong }
extension Register: Request { public typealias Reply = Registered; public static let type = MessageType.register; public static let replyType = MessageType.registered }
extension JobRequest: Request { public typealias Reply = Lease; public static let type = MessageType.jobRequest; public static let replyType = MessageType.lease }
extension Heartbeat: Request { public typealias Reply = HeartbeatAck; public static let type = MessageType.heartbeat; public static let replyType = MessageType.heartbeatAck }
extension Events: Request { public typealias Reply = EventsAck; public static let type = MessageType.events; public static let replyType = MessageType.eventsAck }
extension UploadBegin: Request { public typealias Reply = UploadReady; public static let type = MessageType.uploadBegin; public static let replyType = MessageType.uploadReady }
/// Followed by a binary frame of `length` bytes.
extension UploadChunk: Request { public typealias Reply = ChunkAck; public static let type = MessageType.uploadChunk; public static let replyType = MessageType.chunkAck }
extension UploadEnd: Request { public typealias Reply = Empty; public static let type = MessageType.uploadEnd; public static let replyType = MessageType.ok }
extension JobDone: Request { public typealias Reply = Empty; public static let type = MessageType.jobDone; public static let replyType = MessageType.ok }
extension JobFailed: Request { public typealias Reply = Empty; public static let type = MessageType.jobFailed; public static let replyType = MessageType.ok }
extension Submit: Request { public typealias Reply = Submitted; public static let type = MessageType.submit; public static let replyType = MessageType.submitted }
extension ListSweeps: Request { public typealias Reply = Rows<SweepRow>; public static let type = MessageType.listSweeps; public static let replyType = MessageType.sweeps }
/// The reply's rows follow as a binary frame of JSON (`Incoming.resultRows`).
extension ResultsQuery: Request { public typealias Reply = Count; public static let type = MessageType.results; public static let replyType = MessageType.results }
extension JobQuery: Request { public typealias Reply = JobDetail; public static let type = MessageType.job; public static let replyType = MessageType.job }
extension LogsQuery: Request { public typealias Reply = Rows<EventRow>; public static let type = MessageType.logs; public static let replyType = MessageType.logs }
extension WaitingQuery: Request { public typealias Reply = Rows<WaitingRow>; public static let type = MessageType.waiting; public static let replyType = MessageType.waiting }
/// The reply is followed by a binary frame of the chunk's bytes.
extension ReadArtifact: Request { public typealias Reply = ArtifactChunk; public static let type = MessageType.readArtifact; public static let replyType = MessageType.artifactChunk }
extension CancelRequest: Request { public typealias Reply = Count; public static let type = MessageType.cancel; public static let replyType = MessageType.count }
extension ExtendSweep: Request { public typealias Reply = Submitted; public static let type = MessageType.extend; public static let replyType = MessageType.submitted }
extension RetryRequest: Request { public typealias Reply = Count; public static let type = MessageType.retry; public static let replyType = MessageType.count }
extension ListWorkers: Request { public typealias Reply = Rows<WorkerRow>; public static let type = MessageType.listWorkers; public static let replyType = MessageType.workers }
extension CoordinatorStatusQuery: Request { public typealias Reply = CoordinatorStatus; public static let type = MessageType.status; public static let replyType = MessageType.status }
extension AuditQuery: Request { public typealias Reply = Rows<AuditRow>; public static let type = MessageType.audit; public static let replyType = MessageType.audit }
extension CollectGarbage: Request { public typealias Reply = GarbageCollected; public static let type = MessageType.gc; public static let replyType = MessageType.collected }
extension Unquarantine: Request { public typealias Reply = Empty; public static let type = MessageType.unquarantine; public static let replyType = MessageType.ok }
