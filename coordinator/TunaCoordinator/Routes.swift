import Foundation
import TunaCore
import TunaDashboard
import TunaStore
import TunaWire

extension CoordinatorServer {
    /// The dispatch table: message type -> the store, the scheduler or the artifact intake.
    /// Each row decodes its request type, calls one of them and replies with the request's
    /// reply type; the rules live in what it calls, not here.
    func route(_ msg: Incoming, _ s: Session) async throws {
        guard let type = MessageType(rawValue: msg.type) else {
            throw ErrorReply(code: .unknownType, message: "unknown message type `\(msg.type)`")
        }
        if type == .hello { return try await hello(msg, s) }
        guard let role = s.role, let who = s.principal else { throw ErrorReply(code: .unauthorized, message: "say hello first") }
        guard who.role.may(type) else {
            throw ErrorReply(code: .forbidden, message: "`\(msg.type)` is not allowed with a \(who.role.rawValue) token (\(who.name))")
        }
        let actor = Actor(name: who.name, role: who.role.rawValue)
        if type.isWorkerOnly {
            guard role == "worker" else { throw ErrorReply(code: .unauthorized, message: "`\(msg.type)` is for workers") }
            if type != .register && s.workerID == nil { throw ErrorReply(code: .unauthorized, message: "register first") }
        }
        let now = await coordinator.now
        let worker = s.workerID ?? ""
        switch type {
        case .ping:
            try await reply(msg, s) { (_: Ping) in Empty() }
        case .register:
            try await reply(msg, s) { (r: Register) in try await coordinator.register(s, r) }
        case .jobRequest:
            // Parked: the scheduler replies with a lease when one fits.
            await coordinator.request(s, re: msg.header.id ?? 0, try msg.decode(JobRequest.self))
        case .heartbeat:
            try await reply(msg, s) { (h: Heartbeat) in
                let lost = try await store.renew(worker: worker, leases: h.leases, now: now, policy: config.policy)
                // Free GPUs from a heartbeat that was written before the worker started its latest
                // lease (frames of one connection can be written out of order) would hand that
                // lease's GPUs out again: they count only when the heartbeat names every attempt
                // the store has running on this worker.
                if let free = h.free_gpus, try store.runningAttempts(worker: worker).isSubset(of: Set(h.leases)) {
                    await coordinator.freeGPUs(s, free)
                }
                return HeartbeatAck(lost: lost, quarantined: try store.isQuarantined(worker: worker))
            }
        case .events:
            try await reply(msg, s) { (e: Events) in
                let ingested = try await store.ingest(e, worker: worker, now: now)
                metrics.eventsIngested.increment(by: Int64(ingested.stored))
                if !ingested.points.isEmpty { feed.publish(LiveUpdate(sweep: ingested.sweep, job: e.job, points: ingested.points)) }
                // Early stopping's decisions, told to the workers running those attempts.
                for (ref, worker, reason) in ingested.stopped {
                    await coordinator.notifyCancelled([(ref, worker)], reason: reason)
                }
                if !ingested.stopped.isEmpty || ingested.promoted { await coordinator.dispatch() }
                return EventsAck(through_seq: ingested.through)
            }
        case .uploadBegin:
            try await reply(msg, s) { (b: UploadBegin) in try await intake.begin(b, worker: worker) }
        case .uploadChunk:
            try await reply(msg, s) { (c: UploadChunk) in
                let ack = try await intake.chunk(c, bytes: msg.binary, worker: worker)
                metrics.artifactBytesIngested.increment(by: Int64(msg.binary?.count ?? 0))
                return ack
            }
        case .uploadEnd:
            try await reply(msg, s) { (u: UploadEnd) in try await intake.end(u.upload, worker: worker, now: now); return Empty() }
        case .jobDone:
            try await reply(msg, s) { (d: JobDone) in
                let outcome: AttemptOutcome = d.paused_at_step.map { .paused(step: $0) } ?? .succeeded
                try await store.finish(AttemptRef(job: d.job, attempt: d.attempt), worker: worker, outcome: outcome, now: now, policy: config.policy)
                return Empty()
            }
            // A job may have been promoted, or a step budget given steps back: waiting workers may have work.
            await coordinator.dispatch()
        case .jobFailed:
            try await reply(msg, s) { (f: JobFailed) in
                let outcome: AttemptOutcome = f.returned ? .returned(f.reason) : .failed(f.reason)
                try await store.finish(AttemptRef(job: f.job, attempt: f.attempt), worker: worker, outcome: outcome, now: now, policy: config.policy)
                return Empty()
            }
            await coordinator.dispatch()
        case .submit:
            try await reply(msg, s) { (sub: Submit) in
                let plan: SweepPlan
                // Validating a large grid takes seconds of CPU: done on its own thread, so
                // the tasks serving other connections keep theirs.
                do { plan = try await onOwnThread { try SweepSpec.plan(yaml: sub.spec) } } catch let e as TunaError {
                    throw ErrorReply(code: .invalidSpec, message: e.description)
                }
                return try await store.insertSweep(plan, specYAML: sub.spec, now: now, by: actor)
            }
            await coordinator.dispatch()
        case .listSweeps:
            try await reply(msg, s) { (_: ListSweeps) in Rows(try store.sweeps()) }
        case .results:
            // The rows travel as one binary frame of JSON (see Store.resultsJSON).
            let q = try msg.decode(ResultsQuery.self)
            let (count, json) = try store.resultsJSON(sweep: q.sweep, sort: q.sort)
            await s.send(ResultsQuery.replyType, re: msg.header.id, Count(count: count), binary: json)
        case .job:
            try await reply(msg, s) { (q: JobQuery) in
                guard let job = q.job else { throw ErrorReply(code: .badRequest, message: "`job` needs a job id") }
                return try store.jobDetail(job)
            }
        case .logs:
            try await reply(msg, s) { (q: LogsQuery) in Rows(try store.events(job: q.job, attempt: q.attempt, afterSeq: q.after_seq)) }
        case .readArtifact:
            let r = try msg.decode(ReadArtifact.self)
            try ArtifactRules.checkDigest(r.sha256)
            guard try store.hasArtifact(sha256: r.sha256) else { throw ErrorReply(code: .notFound, message: "no artifact \(r.sha256)") }
            if who.role == .worker, !(try store.workerHolds(sha256: r.sha256, worker: worker)) {
                throw ErrorReply(code: .forbidden, message: "a worker token may download only the artifacts of the jobs it holds")
            }
            let (bytes, size) = try artifacts.read(sha256: r.sha256, offset: r.offset, length: min(r.length, Frame.chunkSize))
            await s.send(ReadArtifact.replyType, re: msg.header.id,
                         ArtifactChunk(offset: r.offset, length: bytes.count, sha256: bytes.sha256Hex, size: size), binary: bytes)
        case .cancel:
            try await reply(msg, s) { (c: CancelRequest) in
                try requireOwner(who, sweep: c.sweep, job: c.job)
                let (count, running) = try await store.cancel(c, now: now, by: actor)
                await coordinator.notifyCancelled(running, reason: "cancelled by user")
                return Count(count: count)
            }
            // Cancelling a job of a promoting sweep may have promoted another (its sweep drained).
            await coordinator.dispatch()
        case .retry:
            try await reply(msg, s) { (r: RetryRequest) in
                guard let sweep = r.sweep else { throw ErrorReply(code: .badRequest, message: "`retry` needs a sweep id") }
                try requireOwner(who, sweep: sweep, job: nil)
                return Count(count: try await store.retry(sweep: sweep, now: now, by: actor))
            }
            await coordinator.dispatch()
        case .extend:
            try await reply(msg, s) { (e: ExtendSweep) in
                try requireOwner(who, sweep: e.sweep, job: nil)
                do { return try await store.extendSweep(e.sweep, by: e.count, now: now, who: actor) } catch let e as TunaError {
                    throw ErrorReply(code: .invalidSpec, message: e.description)
                }
            }
            await coordinator.dispatch()
        case .waiting:
            try await reply(msg, s) { (q: WaitingQuery) in Rows(try await coordinator.waiting(sweep: q.sweep, grouped: q.grouped ?? false)) }
        case .listWorkers:
            try await reply(msg, s) { (_: ListWorkers) in Rows(try store.workers(connected: await coordinator.connectedWorkers)) }
        case .gc:
            try await reply(msg, s) { (g: CollectGarbage) in try await collectGarbage(g, by: actor, now: now) }
        case .audit:
            try await reply(msg, s) { (q: AuditQuery) in Rows(try store.audit(limit: q.limit)) }
        case .status:
            try await reply(msg, s) { (_: CoordinatorStatusQuery) in
                let problem = storage.problem
                return CoordinatorStatus(tuna: TunaVersion.current, protocol: ProtocolVersion.current, started_ms: startedMs,
                                         connections: counter.open, max_connections: counter.maxTotal, data_dir: config.dataDir.path,
                                         free_bytes: storage.freeBytes, storage_problem: problem?.message,
                                         storage_problem_since_ms: problem?.sinceMs, storage_refusals: problem?.refusals)
            }
        case .unquarantine:
            try await reply(msg, s) { (u: Unquarantine) in try await store.unquarantine(worker: u.worker, now: now, by: actor); return Empty() }
            await coordinator.dispatch()
        case .hello, .welcome, .error, .ok, .pong, .collected, .registered, .lease, .heartbeatAck, .eventsAck, .uploadReady, .chunkAck,
             .submitted, .sweeps, .count, .artifactChunk, .workers:
            throw ErrorReply(code: .unknownType, message: "`\(msg.type)` is a reply, not a request")
        }
    }

    /// A `submit` token may cancel, retry and extend only the sweeps it submitted; `admin` any.
    private func requireOwner(_ who: Principal, sweep: SweepID?, job: JobID?) throws {
        guard who.role != .admin else { return }
        let owner = try store.owner(sweep: sweep, job: job)
        guard owner == who.name else {
            throw ErrorReply(code: .forbidden, message: "\(job.map { "job \($0)" } ?? "sweep \(sweep ?? 0)") was submitted by \(owner ?? "an unnamed token"), not \(who.name): a submit token may cancel, retry and extend only its own sweeps")
        }
    }

    /// Decodes the request, runs `handle`, and sends its reply as the request's reply type.
    private func reply<R: Request & Decodable>(_ msg: Incoming, _ s: Session, _ handle: (R) async throws -> R.Reply) async throws {
        let request = try msg.decode(R.self)
        await s.send(R.replyType, re: msg.header.id, try await handle(request))
    }

    private func hello(_ msg: Incoming, _ s: Session) async throws {
        let h = try msg.decode(Hello.self)
        guard h.version == ProtocolVersion.current else {
            throw ErrorReply(code: .version, message: ProtocolVersion.mismatch(peer: h.version, peerRelease: h.tuna))
        }
        guard let who = tokens.withLockedValue({ $0.principal(for: h.token) }) else {
            throw ErrorReply(code: .unauthorized, message: "wrong or missing token")
        }
        guard h.role == "worker" || h.role == "client" else {
            throw ErrorReply(code: .badMessage, message: "role must be worker or client")
        }
        guard who.role.opens(h.role) else {
            throw ErrorReply(code: .unauthorized, message: "a \(who.role.rawValue) token cannot connect as a \(h.role)")
        }
        s.principal = who
        s.role = h.role
        await s.send(Hello.replyType, re: msg.header.id, Welcome(version: ProtocolVersion.current, server: "tuna-coordinator"))
    }
}

func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    guard x.count == y.count else { return false }
    var diff: UInt8 = 0
    for i in 0..<x.count { diff |= x[i] ^ y[i] }
    return diff == 0
}
