import Foundation
import Logging
import NIOConcurrencyHelpers
import TunaCore
import TunaWire

/// The worker process: keeps a connection to the coordinator (reconnecting with backoff),
/// asks for jobs while it has free slots and GPUs, runs each in a `JobRunner`, renews
/// leases, and relays events and uploads. Running jobs never depend on the connection:
/// when the coordinator restarts they keep going and re-attach on reconnect.
public actor WorkerDaemon {
    let config: WorkerConfig
    let log: Logger
    let workerID: String
    let capabilities: Capabilities
    let sink = EventSink()
    private var client: WireClient?
    private var connectWaiters: [CheckedContinuation<Void, Never>] = []
    private var runners: [AttemptRef: (runner: JobRunner, gpus: [Int], task: Task<Void, Never>)] = [:]
    /// When the worker last had nothing to run (for --exit-when-idle); nil while it runs jobs.
    private var idleSince: Date? = Date()
    private var shuttingDown = false
    /// Set by the signal handler at once, before `shutdown()` gets onto this actor: under Slurm
    /// (and systemd's KillMode=control-group) the trainers get the same SIGTERM as the worker
    /// and may exit first; their exit then is a return, not a failure.
    nonisolated let terminationRequested = NIOLockedValueBox(false)
    private var quarantined = false
    /// Woken when this worker may ask for a job again: a runner ended, or the quarantine lifted.
    private let mayAsk = Wakeup()
    /// Whether the current session has registered (resets the reconnect backoff).
    private var registered = false

    public init(config: WorkerConfig, log: Logger = Logger(label: "tuna.worker")) throws {
        self.config = config
        self.log = log
        try FileManager.default.createDirectory(at: config.workDir, withIntermediateDirectories: true)
        // A stable identity across restarts, so re-registration finds this worker's leases.
        let idFile = config.workDir.appendingPathComponent("worker-id")
        if let id = try? String(contentsOf: idFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !id.isEmpty {
            workerID = id
        } else {
            workerID = UUID().uuidString.lowercased()
            try workerID.write(to: idFile, atomically: true, encoding: .utf8)
        }
        capabilities = HardwareProbe.probe(trainers: config.trainers.map(\.name), gpus: config.gpus)
    }

    var name: String { config.name ?? capabilities.hostname }

    // MARK: Main loop

    /// Runs until `shutdown()` finishes handing jobs back.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.pumpEvents() }
            group.addTask { await self.connectLoop() }
            if let idle = config.exitWhenIdleSeconds { group.addTask { await self.exitWhenIdle(after: idle) } }
            await group.next()
            group.cancelAll()
        }
    }

    private func connectLoop() async {
        var delay = config.backoffMin
        while (!shuttingDown || !runners.isEmpty) && !Task.isCancelled {
            registered = false
            do {
                try await session()
            } catch {
                // A session that got as far as registering was a success, however it ended (a
                // session always ends by throwing): the backoff starts over, else a few
                // coordinator restarts would leave the worker waiting backoffMax to reconnect
                // while its leases run out.
                if registered { delay = config.backoffMin }
                if !shuttingDown { log.warning("coordinator \(config.coordinator): \(error); retrying in \(String(format: "%.1f", delay))s") }
            }
            client = nil
            if (shuttingDown && runners.isEmpty) || Task.isCancelled { break }
            try? await Task.sleep(nanoseconds: UInt64(delay * Double.random(in: 0.8...1.2) * 1e9))
            delay = min(config.backoffMax, delay * 2)
        }
    }

    /// One connection's life: register, then request jobs, heartbeat and take pushes until it drops.
    private func session() async throws {
        let token = config.token ?? (config.useLocalToken ? LocalToken.read(port: config.coordinator.port) : nil)
        let c = try await WireClient.connect(config.coordinator, token: token, role: "worker", tls: config.tls)
        defer { c.close() }
        let reg = try await c.send(Register(worker_id: workerID, name: name, capabilities: capabilities,
                                                           max_jobs: config.maxJobs, running: Array(runners.keys)))
        for ref in reg.dropped { await runners[ref]?.runner.stop(.cancelled("lease lost while disconnected")) }
        registered = true
        quarantined = reg.quarantined
        if quarantined { log.error("this worker is quarantined; `tuna workers` says why; it will take no jobs") }
        log.info("connected to \(config.coordinator) as \(name) (\(workerID)); \(reg.reattached.count) running jobs re-attached")
        client = c
        for w in connectWaiters { w.resume() }
        connectWaiters.removeAll()

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.pings(c, everyMs: reg.ping_ms, silenceMs: reg.silence_ms) }
            group.addTask { try await self.heartbeats(c, everyMs: reg.heartbeat_ms) }
            group.addTask { try await self.requestJobs(c) }
            group.addTask {
                for await push in c.pushes where push.type == MessageType.cancel.rawValue {
                    if let cancel = try? push.decode(CancelAttempt.self) {
                        await self.cancel(AttemptRef(job: cancel.job, attempt: cancel.attempt), reason: cancel.reason)
                    }
                }
                throw WireError.closed
            }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Liveness: a ping every `everyMs`, each answered within `silenceMs` or the connection is
    /// taken for dead (a black-holed network sends no reset) and closed, which ends the session
    /// and starts a reconnect. The coordinator closes its side after the same silence.
    private func pings(_ c: WireClient, everyMs: Int64, silenceMs: Int64) async throws {
        while true {
            try await Task.sleep(nanoseconds: UInt64(everyMs) * 1_000_000)
            _ = try await c.send(Ping(), timeout: .milliseconds(silenceMs),
                                 "no reply from the coordinator \(config.coordinator) for \(silenceMs) ms: taking the connection for dead")
        }
    }

    private func heartbeats(_ c: WireClient, everyMs: Int64) async throws {
        while true {
            try await Task.sleep(nanoseconds: UInt64(everyMs) * 1_000_000)
            try await heartbeat(c)
        }
    }

    /// Renews every lease this worker holds (and, for a new one, confirms it reached us).
    private func heartbeat(_ c: WireClient) async throws {
        let ack: HeartbeatAck
        // No free GPUs while shutting down: a widened request would only be leased and handed back.
        do { ack = try await c.send(Heartbeat(leases: Array(runners.keys), free_gpus: shuttingDown ? nil : freeGPUs)) } catch let e as ErrorReply where e.code == .storageUnavailable {
            // The coordinator's disk is full: it keeps our leases (none expires until it can
            // write again), so this is no reason to drop the connection.
            log.warning("heartbeat not recorded: \(e.message)")
            return
        }
        for ref in ack.lost { await cancel(ref, reason: "lease lost") }
        if let q = ack.quarantined, q != quarantined {
            quarantined = q
            mayAsk.wake()
            log.warning(q ? "this worker is quarantined; `tuna workers` says why" : "quarantine lifted; taking jobs again")
        }
    }

    private func requestJobs(_ c: WireClient) async throws {
        while !shuttingDown {
            // Quarantined, or every slot busy: wait for a heartbeat to lift the quarantine or a
            // runner to end. A dropped connection cancels this task, which ends the wait at once.
            let generation = mayAsk.generation
            guard !quarantined, runners.count < config.maxJobs else { try await mayAsk.wait(after: generation); continue }
            let lease = try await c.send(JobRequest(free_gpus: freeGPUs, trainers: capabilities.trainers))
            // A lease that arrives after SIGTERM (or the idle timeout) goes straight back:
            // starting it would only delay the exit the allocation is waiting for.
            if shuttingDown {
                _ = try? await c.send(JobFailed(job: lease.job, attempt: lease.attempt, reason: "worker shutting down",
                                                                   returned: true))
                break
            }
            if let handBack = start(lease) {
                try await c.send(handBack)  // before the next request, which would be offered it again
            }
            // Confirms the lease at once: an unconfirmed lease that expires is taken to have
            // never arrived, and is requeued without counting as a failure.
            try await heartbeat(c)
        }
        try await Task.sleep(nanoseconds: UInt64.max / 2)
    }

    /// This worker's GPUs that no running job holds.
    private var freeGPUs: [GPUInfo] {
        let busy = Set(runners.values.flatMap(\.gpus))
        return capabilities.gpus.filter { !busy.contains($0.index) }
    }

    /// Starts the lease's job; returns the message that hands it back instead when the worker
    /// no longer has the GPUs it needs free.
    private func start(_ lease: Lease) -> JobFailed? {
        let ref = AttemptRef(job: lease.job, attempt: lease.attempt)
        // A spec that does not decode fails its attempt in the runner, with the field it lacks.
        let spec = Result { try JobSpec(json: lease.spec) }
        let job = try? spec.get()
        let name = job?.trainer.rawValue ?? "command"
        let gpus = job.map { job in
            Array(freeGPUs.filter { $0.memory_gb >= job.resources.gpuMemoryGB }.prefix(job.resources.gpus))
        } ?? []
        if let job, gpus.count < job.resources.gpus {
            // The coordinator offered a job for GPUs this worker no longer has free (a stale
            // view): hand it back, uncounted, rather than run it on fewer GPUs or on the CPU.
            log.warning("job \(lease.job) attempt \(lease.attempt): needs \(job.resources.gpus) free GPUs, \(gpus.count) are: returned")
            return JobFailed(job: lease.job, attempt: lease.attempt,
                             reason: "returned: the worker had \(gpus.count) of the \(job.resources.gpus) GPUs free", returned: true)
        }
        let trainer = config.trainers.first { $0.name == name } ?? CommandTrainer()
        let runner = JobRunner(lease: lease, spec: spec, trainer: trainer, gpus: gpus, workDir: config.workDir, daemon: self, graceSeconds: config.graceSeconds,
                               checkpointSyncSeconds: config.checkpointSyncSeconds,
                               cpuThreads: config.cpuThreads(gpus: gpus.count, boxGPUs: capabilities.gpus.count))
        log.info("job \(lease.job) attempt \(lease.attempt): starting (\(name), gpus \(gpus.map(\.index)))")
        let task = Task { await runner.run() }
        runners[ref] = (runner, gpus.map(\.index), task)
        idleSince = nil
        return nil
    }

    private func cancel(_ ref: AttemptRef, reason: String) async {
        guard let r = runners[ref] else { return }
        log.info("job \(ref.job) attempt \(ref.attempt): stopping (\(reason))")
        await r.runner.stop(.cancelled(reason))
    }

    /// What the SIGTERM/SIGINT handler calls: marks the termination synchronously, then shuts down.
    public nonisolated func terminate() {
        terminationRequested.withLockedValue { $0 = true }
        Task { await shutdown() }
    }

    /// SIGTERM: stop taking jobs, ask every trainer to checkpoint and exit, hand the jobs back.
    public func shutdown() async {
        guard !shuttingDown else { return }
        shuttingDown = true
        log.info("shutting down: returning \(runners.count) job(s) to the queue")
        for (_, r) in runners { await r.runner.stop(.returned) }
        if runners.isEmpty { client?.close() }
    }

    /// --exit-when-idle: ends the worker (as SIGTERM would, with nothing to return) once it
    /// has had no job for `seconds`: a Slurm allocation or a cloud box is given back when the
    /// queue has run dry.
    private func exitWhenIdle(after seconds: Double) async {
        while !Task.isCancelled && !shuttingDown {
            try? await Task.sleep(nanoseconds: 500_000_000)
            if let since = idleSince, runners.isEmpty, Date().timeIntervalSince(since) >= seconds {
                log.info("no job for \(Int(seconds)) s (--exit-when-idle): exiting")
                await shutdown()
            }
        }
        // keep the task group's other tasks running until the connection loop ends
        try? await Task.sleep(nanoseconds: UInt64.max / 2)
    }

    // MARK: Services for runners

    func forget(_ ref: AttemptRef) async {
        let freed = runners[ref].map { !$0.gpus.isEmpty } ?? false
        runners[ref] = nil
        mayAsk.wake()
        if runners.isEmpty { idleSince = Date() }
        await sink.drop(ref)
        if shuttingDown {
            if runners.isEmpty { client?.close() }
        } else if freed, let c = client, !c.isClosed {
            // The parked job request still names the GPUs free when it was sent: tell the
            // coordinator now, not at the next heartbeat, that these are free too.
            try? await heartbeat(c)
        }
    }

    func event(_ ref: AttemptRef, _ e: JSONValue) async { await sink.append(ref, e) }

    func log(_ message: String) { log.warning("\(message)") }

    /// Runs `body` with a live connection, waiting for (re)connection and retrying when the
    /// connection drops mid-way, and while the coordinator's disk is full (its fault, not the
    /// job's: the files stay here and go up once it has room). Other errors from the
    /// coordinator are passed on.
    func withClient<R: Sendable>(_ body: @Sendable (WireClient) async throws -> R) async throws -> R {
        var storageWait = 1.0
        while true {
            guard let c = client, !c.isClosed else {
                if shuttingDown && client == nil { throw WireError.closed }
                await withCheckedContinuation { connectWaiters.append($0) }
                continue
            }
            do { return try await body(c) }
            catch is WireError { try? await Task.sleep(nanoseconds: 100_000_000) }
            catch let e as ErrorReply where e.code == .storageUnavailable {
                log.warning("\(e.message); keeping the files, retrying in \(Int(storageWait)) s")
                try await Task.sleep(nanoseconds: UInt64(storageWait * 1e9))
                storageWait = min(15, storageWait * 2)
            }
        }
    }

    /// Sends pending events, in batches, until acknowledged; forever (one per daemon).
    /// Sends the trainers' events as they come (woken by the sink), in batches, until each is
    /// acknowledged; while there is no connection it retries every 200 ms.
    private func pumpEvents() async {
        while !Task.isCancelled {
            let (pending, generation) = await sink.hasPending()
            guard pending else { try? await sink.changed.wait(after: generation); continue }
            var stuck = false
            for batch in await sink.batches() {
                let ref = AttemptRef(job: batch.job, attempt: batch.attempt)
                guard let c = client, !c.isClosed else { stuck = true; break }
                do {
                    let ack = try await c.send(batch)
                    await sink.acknowledge(ref, through: ack.through_seq)
                    // (An ack short of the batch would otherwise have the batch resent at once, forever.)
                    if let last = batch.events.last?.seq, ack.through_seq < last { stuck = true }
                } catch let e as ErrorReply where e.code == .staleAttempt {
                    await sink.drop(ref)
                    await cancel(ref, reason: e.message)
                } catch { stuck = true }
            }
            if stuck { try? await Task.sleep(nanoseconds: 200_000_000) }
        }
    }

    /// Reports the outcome once every event of the attempt is stored.
    func report(_ ref: AttemptRef, ok: Bool, reason: String, returned: Bool, pausedAt: Int? = nil) async throws {
        try await sink.drained(ref)
        try await withClient { c in
            if ok {
                _ = try await c.send(JobDone(job: ref.job, attempt: ref.attempt, paused_at_step: pausedAt))
            } else {
                _ = try await c.send(JobFailed(job: ref.job, attempt: ref.attempt, reason: reason, returned: returned))
            }
        }
        log.info("job \(ref.job) attempt \(ref.attempt): \(ok ? (pausedAt.map { "paused at step \($0)" } ?? "succeeded") : (returned ? "returned to the queue" : "failed: \(reason)"))")
    }
}
