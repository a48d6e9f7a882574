import Foundation
import Logging
import TunaCore
import TunaDashboard
import TunaStore

/// The scheduler: owns who is connected and which job requests are waiting, and hands out
/// leases. Everything that must be decided in one order (which worker gets which job) runs
/// on this actor; the store makes each decision durable in one transaction before the
/// worker hears of it.
public actor Coordinator {
    let store: Store
    let policy: LeasePolicy
    let connections: ConnectionLimits
    let clock: @Sendable () -> Int64
    let log: Logger
    let metrics: CoordinatorMetrics

    /// Workers with a live connection, by worker id.
    private var workers: [String: Session] = [:]
    /// Long-polled job requests, oldest first.
    private var waiting: [(session: Session, re: Int64, request: JobRequest)] = []

    public init(store: Store, policy: LeasePolicy, connections: ConnectionLimits = ConnectionLimits(),
                clock: @escaping @Sendable () -> Int64 = Coordinator.wallClock, log: Logger, metrics: CoordinatorMetrics = CoordinatorMetrics()) {
        self.store = store; self.policy = policy; self.connections = connections; self.clock = clock; self.log = log; self.metrics = metrics
    }

    public static let wallClock: @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }

    public var now: Int64 { clock() }

    // MARK: Workers

    func register(_ session: Session, _ r: Register) async throws -> Registered {
        guard r.max_jobs >= 1 else { throw ErrorReply(code: .badRequest, message: "register needs max_jobs >= 1") }
        if let problem = Register.idProblem(r.worker_id) ?? Register.nameProblem(r.name) {
            throw ErrorReply(code: .badRequest, message: problem)
        }
        let now = clock()
        let quarantined = try await store.upsertWorker(r, now: now)
        if let old = workers[r.worker_id], old !== session {
            // The same worker reconnected: its old connection is dead or about to be.
            waiting.removeAll { $0.session === old }
            old.close()
        }
        workers[r.worker_id] = session
        session.workerID = r.worker_id
        let lost = try await store.renew(worker: r.worker_id, leases: r.running, now: now, policy: policy)
        let kept = r.running.filter { !lost.contains($0) }
        log.info("worker \(r.name) (\(r.worker_id)) registered; reattached \(kept.count), dropped \(lost.count)")
        return Registered(lease_ms: policy.leaseMs, heartbeat_ms: max(100, policy.leaseMs / 3),
                          ping_ms: connections.ping(leaseMs: policy.leaseMs), silence_ms: connections.silence(leaseMs: policy.leaseMs), reattached: kept, dropped: lost, quarantined: quarantined)
    }

    func disconnected(_ session: Session) {
        session.isGone = true
        waiting.removeAll { $0.session === session }
        if let id = session.workerID, workers[id] === session { workers[id] = nil }
    }

    var connectedWorkers: Set<String> { Set(workers.keys) }

    // MARK: Dispatch

    /// Parks a job request and tries to satisfy it now.
    func request(_ session: Session, re: Int64, _ r: JobRequest) async {
        waiting.removeAll { $0.session === session }   // a newer request replaces an older one
        waiting.append((session, re, r))
        await dispatch(only: session)
    }

    /// A heartbeat's free GPUs replace those of the session's parked request, which may now fit
    /// a job it did not (two one-GPU jobs ended; a two-GPU job waits). Safe because the worker
    /// has one request at a time: while it is parked no lease is on its way, so GPUs can only
    /// have been freed since the heartbeat was written, never taken. A request that a dispatch
    /// holds at this moment keeps its old GPUs until the next heartbeat.
    func freeGPUs(_ session: Session, _ free: [GPUInfo]) async {
        guard let k = waiting.firstIndex(where: { $0.session === session }), waiting[k].request.free_gpus != free else { return }
        waiting[k].request.free_gpus = free
        await dispatch(only: session)
    }

    /// Matches waiting requests with ready jobs (all of them, or one session's).
    func dispatch(only: Session? = nil) async {
        // Take the requests out of the queue before awaiting the store, so that a concurrent
        // dispatch cannot serve them twice; those no job fits go back, keeping their place.
        let batch = only.map { s in waiting.filter { $0.session === s } } ?? waiting
        waiting.removeAll { w in batch.contains { $0.session === w.session } }
        let ready = batch.filter { $0.session.workerID != nil && !$0.session.isGone }
        guard !ready.isEmpty else { return }
        let leases: [Lease?]
        let started = ContinuousClock.now
        do {
            leases = try await store.leaseBatch(ready.map { ($0.session.workerID ?? "", $0.request) }, now: clock(), policy: policy)
        } catch {
            log.error("lease failed: \(error)")
            leases = Array(repeating: nil, count: ready.count)
        }
        metrics.dispatchLatency.record(ContinuousClock.now - started)
        metrics.leasesGranted.increment(by: Int64(leases.lazy.compactMap { $0 }.count))
        var unserved: [(session: Session, re: Int64, request: JobRequest)] = []
        for (w, lease) in zip(ready, leases) {
            guard let lease else { if !w.session.isGone { unserved.append(w) }; continue }
            log.debug("job \(lease.job) attempt \(lease.attempt) -> \(w.session.workerID ?? "?")")
            await w.session.send(JobRequest.replyType, re: w.re, lease)
        }
        waiting.insert(contentsOf: unserved.filter { u in !waiting.contains { $0.session === u.session } }, at: 0)
    }

    /// Why each queued job waits (`tuna jobs`, `tuna submit`): blocked when no connected worker
    /// could ever take it as things stand (`WaitReason`), else for a free slot or its backoff.
    func waiting(sweep: SweepID?, grouped: Bool) async throws -> [WaitingRow] {
        let now = clock()
        let offers = try store.workers(connected: connectedWorkers).map {
            WaitReason.Offer(name: $0.name, connected: $0.connected, quarantined: $0.quarantined, capabilities: $0.capabilities)
        }
        if grouped {
            // Rows of one sweep with the same reason merge (two needs can both be unmet by
            // "no worker is connected").
            var rows: [WaitingRow] = []
            for g in try store.queuedNeedGroups(sweep: sweep, now: now) {
                let blocked = WaitReason.blocked(g.need, offers: offers)
                let reason = blocked ?? (g.backingOff ? "retry backoff" : "waiting for a free worker slot or GPU")
                if let k = rows.firstIndex(where: { $0.sweep == g.sweep && $0.reason == reason }) {
                    rows[k].jobs! += g.jobs
                } else {
                    rows.append(WaitingRow(job: g.first, sweep: g.sweep, reason: reason, blocked: blocked != nil, jobs: g.jobs))
                }
            }
            return rows
        }
        let queued = try store.queuedNeeds(sweep: sweep)
        // Jobs of a sweep share a few needs: judge each distinct one once.
        let verdicts = Dictionary(uniqueKeysWithValues: Set(queued.map(\.need)).map { ($0, WaitReason.blocked($0, offers: offers)) })
        return queued.map { q in
            if let blocked = verdicts[q.need] ?? nil { return WaitingRow(job: q.job, sweep: q.sweep, reason: blocked, blocked: true) }
            let reason = q.notBeforeMs > now
                ? "retry backoff: eligible again in \((q.notBeforeMs - now + 999) / 1000) s"
                : "waiting for a free worker slot or GPU"
            return WaitingRow(job: q.job, sweep: q.sweep, reason: reason, blocked: false)
        }
    }

    // MARK: Housekeeping

    /// Expires unrenewed leases, tells their workers (if connected) to stop, and offers the
    /// requeued jobs (and any whose backoff ended) to waiting workers.
    func reap() async {
        let now = clock()
        do {
            let lost = try await store.expireLeases(now: now, policy: policy)
            metrics.leasesExpired.increment(by: Int64(lost.count))
            for (ref, worker, confirmed) in lost {
                log.warning(confirmed ? "job \(ref.job) attempt \(ref.attempt) lost its lease (worker \(worker))"
                                      : "job \(ref.job) attempt \(ref.attempt): the lease never reached worker \(worker); job requeued, no failure counted")
                await workers[worker]?.send(.cancel, CancelAttempt(job: ref.job, attempt: ref.attempt, reason: "lease expired"))
            }
        } catch StoreError.storage {
            // The disk is full: nothing expires now (heartbeats could not be recorded either);
            // CoordinatorServer.afterStorageTrouble extends the leases once it has room.
        } catch { log.error("reaper: \(error)") }
        if !waiting.isEmpty { await dispatch() }
    }

    /// Tells the workers running these attempts to stop.
    func notifyCancelled(_ running: [(AttemptRef, String)], reason: String) async {
        for (ref, worker) in running {
            await workers[worker]?.send(.cancel, CancelAttempt(job: ref.job, attempt: ref.attempt, reason: reason))
        }
    }
}
