import Crypto
import Foundation
import TunaCore
import TunaStore
import TunaWire

/// Messages only a registered worker may send.
enum Routes {
    static let workerOnly: Set<String> = ["register", "job_request", "heartbeat", "events", "upload_begin",
                                          "upload_chunk", "upload_end", "job_done", "job_failed"]
}

extension CoordinatorServer {
    /// The dispatch table: message type → handler. Handlers decode, call the store or the
    /// scheduler, and reply; no business rules live here.
    func route(_ msg: Incoming, _ s: Session) async throws {
        let re = msg.header.id
        if msg.type == "hello" { return try await hello(msg, s) }
        guard let role = s.role else { throw ErrorReply(code: .unauthorized, message: "say hello first") }
        if Routes.workerOnly.contains(msg.type) {
            guard role == "worker" else { throw ErrorReply(code: .unauthorized, message: "`\(msg.type)` is for workers") }
            if msg.type != "register" && s.workerID == nil { throw ErrorReply(code: .unauthorized, message: "register first") }
        }
        let now = await coordinator.now
        let worker = s.workerID ?? ""
        switch msg.type {
        case "register":
            let r = try msg.decode(Register.self)
            guard !r.worker_id.isEmpty, r.max_jobs >= 1 else { throw ErrorReply(code: .badRequest, message: "register needs a worker_id and max_jobs >= 1") }
            await s.send("registered", re: re, try await coordinator.register(s, r))
        case "job_request":
            await coordinator.request(s, re: re ?? 0, try msg.decode(JobRequest.self))
        case "heartbeat":
            let lost = try await store.renew(worker: worker, leases: try msg.decode(Heartbeat.self).leases, now: now, policy: config.policy)
            await s.send("heartbeat_ack", re: re, HeartbeatAck(lost: lost, quarantined: try store.isQuarantined(worker: worker)))
        case "events":
            let through = try await store.appendEvents(try msg.decode(Events.self), worker: worker, now: now)
            await s.send("events_ack", re: re, EventsAck(through_seq: through))
        case "upload_begin":
            await s.send("upload_ready", re: re, try await beginUpload(try msg.decode(UploadBegin.self), worker: worker))
        case "upload_chunk":
            await s.send("chunk_ack", re: re, try await uploadChunk(try msg.decode(UploadChunk.self), bytes: msg.binary, worker: worker))
        case "upload_end":
            let u = try msg.decode(UploadEnd.self)
            try await endUpload(u.upload, worker: worker, now: now)
            await s.send("ok", re: re, Empty())
        case "job_done":
            let d = try msg.decode(JobDone.self)
            try await store.finish(AttemptRef(job: d.job, attempt: d.attempt), worker: worker, outcome: .succeeded, now: now, policy: config.policy)
            await s.send("ok", re: re, Empty())
        case "job_failed":
            let f = try msg.decode(JobFailed.self)
            let outcome: Store.Outcome = f.returned ? .returned(f.reason) : .failed(f.reason)
            try await store.finish(AttemptRef(job: f.job, attempt: f.attempt), worker: worker, outcome: outcome, now: now, policy: config.policy)
            await s.send("ok", re: re, Empty())
            await coordinator.dispatch()
        case "submit":
            let sub = try msg.decode(Submit.self)
            let plan: SweepPlan
            do { plan = try SweepSpec.plan(yaml: sub.spec) } catch let e as TunaError {
                throw ErrorReply(code: .invalidSpec, message: e.description)
            }
            await s.send("submitted", re: re, try await store.insertSweep(plan, specYAML: sub.spec, now: now))
            await coordinator.dispatch()
        case "list_sweeps":
            await s.send("sweeps", re: re, Rows(try store.sweeps()))
        case "results":
            let q = try msg.decode(ResultsQuery.self)
            // The rows travel as one binary frame of JSON (see Store.resultsJSON).
            let (count, json) = try store.resultsJSON(sweep: q.sweep, sort: q.sort)
            await s.send("results", re: re, Count(count: count), binary: json)
        case "job":
            let t = try msg.decode(Target.self)
            guard let job = t.job else { throw ErrorReply(code: .badRequest, message: "`job` needs a job id") }
            await s.send("job", re: re, try store.jobDetail(job))
        case "logs":
            let q = try msg.decode(LogsQuery.self)
            await s.send("logs", re: re, Rows(try store.events(job: q.job, attempt: q.attempt)))
        case "read_artifact":
            let r = try msg.decode(ReadArtifact.self)
            try ArtifactRules.checkDigest(r.sha256)
            guard try store.hasArtifact(sha256: r.sha256) else { throw ErrorReply(code: .notFound, message: "no artifact \(r.sha256)") }
            let (bytes, size) = try artifacts.read(sha256: r.sha256, offset: r.offset, length: min(r.length, Frame.chunkSize))
            await s.send("artifact_chunk", re: re, ArtifactChunk(offset: r.offset, length: bytes.count, sha256: bytes.sha256Hex, size: size), binary: bytes)
        case "cancel":
            let (count, running) = try await store.cancel(try msg.decode(Target.self), now: now)
            await coordinator.notifyCancelled(running, reason: "cancelled by user")
            await s.send("count", re: re, Count(count: count))
        case "retry":
            let t = try msg.decode(Target.self)
            guard let sweep = t.sweep else { throw ErrorReply(code: .badRequest, message: "`retry` needs a sweep id") }
            let n = try await store.retry(sweep: sweep)
            await s.send("count", re: re, Count(count: n))
            await coordinator.dispatch()
        case "waiting":
            await s.send("waiting", re: re, Rows(try await coordinator.waiting(sweep: try msg.decode(ResultsQuery.self).sweep)))
        case "list_workers":
            await s.send("workers", re: re, Rows(try store.workers(connected: await coordinator.connectedWorkers)))
        case "unquarantine":
            try await store.unquarantine(worker: try msg.decode(WorkerName.self).worker)
            await s.send("ok", re: re, Empty())
            await coordinator.dispatch()
        default:
            throw ErrorReply(code: .unknownType, message: "unknown message type `\(msg.type)`")
        }
    }

    private func hello(_ msg: Incoming, _ s: Session) async throws {
        let h = try msg.decode(Hello.self)
        guard h.version == ProtocolVersion.current else {
            throw ErrorReply(code: .version, message: ProtocolVersion.mismatch(peer: h.version, peerRelease: h.tuna))
        }
        if let expected = config.token, !expected.isEmpty {
            guard let given = h.token, constantTimeEqual(given, expected) else {
                throw ErrorReply(code: .unauthorized, message: "wrong or missing token")
            }
        }
        guard h.role == "worker" || h.role == "client" else {
            throw ErrorReply(code: .badMessage, message: "role must be worker or client")
        }
        s.role = h.role
        await s.send("welcome", re: msg.header.id, Welcome(version: ProtocolVersion.current, server: "tuna-coordinator"))
    }

    // MARK: Uploads

    private func beginUpload(_ b: UploadBegin, worker: String) async throws -> UploadReady {
        try ArtifactRules.checkName(b.artifact.name)
        try ArtifactRules.checkDigest(b.artifact.sha256)
        guard ["adapter", "checkpoint", "output"].contains(b.artifact.kind) else {
            throw ErrorReply(code: .badArtifact, message: "artifact kind must be adapter, checkpoint or output")
        }
        guard b.artifact.size >= 0 else { throw ErrorReply(code: .badArtifact, message: "negative size") }
        let u = try await store.beginUpload(AttemptRef(job: b.job, attempt: b.attempt), worker: worker, artifact: b.artifact)
        let offset = try artifacts.prepare(upload: u.id, received: u.received)
        if offset != u.received { try await store.setUploadReceived(u.id, offset) }
        return UploadReady(upload: u.id, offset: offset)
    }

    private func uploadChunk(_ c: UploadChunk, bytes: Data?, worker: String) async throws -> ChunkAck {
        guard let bytes, bytes.count == c.length else {
            throw ErrorReply(code: .badMessage, message: "upload_chunk must be followed by a binary frame of `length` bytes")
        }
        let u = try store.upload(c.upload)
        // Only the worker holding the attempt's lease may write to its uploads.
        try store.checkLive(try store.uploadAttempt(c.upload), worker: worker)
        guard c.offset == u.received else {
            throw ErrorReply(code: .badOffset, message: "upload \(c.upload) expects offset \(u.received), got \(c.offset)")
        }
        guard c.offset + Int64(bytes.count) <= u.artifact.size else {
            throw ErrorReply(code: .badArtifact, message: "chunk runs past the declared size \(u.artifact.size)")
        }
        guard bytes.sha256Hex == c.sha256 else {
            throw ErrorReply(code: .badChecksum, message: "chunk at \(c.offset): SHA-256 mismatch; resend it")
        }
        try artifacts.write(upload: u.id, offset: c.offset, bytes: bytes)
        let received = c.offset + Int64(bytes.count)
        try await store.setUploadReceived(u.id, received)
        return ChunkAck(offset: received)
    }

    private func endUpload(_ id: Int64, worker: String, now: Int64) async throws {
        let u = try store.upload(id)
        guard u.received == u.artifact.size else {
            throw ErrorReply(code: .badArtifact, message: "upload \(id) has \(u.received) of \(u.artifact.size) bytes")
        }
        let ref = try store.uploadAttempt(id)
        do { try artifacts.finalize(upload: id, expected: u.artifact) } catch {
            try? await store.setUploadReceived(id, 0)
            throw error
        }
        try await store.completeUpload(id, ref: ref, worker: worker, now: now)
    }
}

func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    guard x.count == y.count else { return false }
    var diff: UInt8 = 0
    for i in 0..<x.count { diff |= x[i] ^ y[i] }
    return diff == 0
}

extension Data {
    var sha256Hex: String { Crypto.SHA256.hash(data: self).hex }
}
