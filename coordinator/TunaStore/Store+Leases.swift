import Foundation
import GRDB
import TunaCore

/// Policy knobs the store applies inside its transactions.
public struct LeasePolicy: Sendable {
    public var leaseMs: Int64 = 30_000
    public var backoffBaseMs: Int64 = 2_000
    public var backoffCapMs: Int64 = 300_000
    /// Consecutive failed attempts after which a worker is quarantined.
    public var quarantineAfter = 3
    public init() {}
}

extension Store {
    /// Records a worker (new or returning) and its capabilities; returns whether it is quarantined.
    public func upsertWorker(_ r: Register, now: Int64) async throws -> Bool {
        try await write { db in
            try db.execute(sql: """
                INSERT INTO workers (id, name, capabilities, first_seen_ms, last_seen_ms) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET name = excluded.name, capabilities = excluded.capabilities,
                                              last_seen_ms = excluded.last_seen_ms
                """, arguments: [r.worker_id, r.name, jsonText(r.capabilities), now, now])
            return try Bool.fetchOne(db, sql: "SELECT quarantined FROM workers WHERE id = ?", arguments: [r.worker_id]) ?? false
        }
    }

    /// After a restart every running lease gets a fresh term: workers could not heartbeat
    /// while the coordinator was down, and their jobs kept running.
    public func extendRunningLeases(now: Int64, policy: LeasePolicy) async throws {
        _ = try await write { db in
            try db.execute(sql: "UPDATE attempts SET lease_expires_ms = MAX(lease_expires_ms, ?) WHERE state = 'running'",
                           arguments: [now + policy.leaseMs])
        }
    }

    /// Picks the best ready job that fits the worker's free resources (highest priority,
    /// then oldest) and leases it as a new attempt. Nil if none fits.
    public func leaseNext(worker: String, request: JobRequest, now: Int64, policy: LeasePolicy) async throws -> Lease? {
        try await leaseBatch([(worker, request)], now: now, policy: policy)[0]
    }

    /// Leases for several waiting requests, in order, in one transaction (one fsync).
    public func leaseBatch(_ requests: [(worker: String, request: JobRequest)], now: Int64, policy: LeasePolicy) async throws -> [Lease?] {
        try await write { db in
            // Requests of the same shape (trainers, free GPUs) that found no job would find none
            // again in this transaction: skip them (200 idle workers, one new job).
            var fruitless = Set<String>()
            return try requests.map { r -> Lease? in
                let shape = r.request.trainers.sorted().joined(separator: ",") + "|" + r.request.free_gpus.map { "\($0.memory_gb)" }.sorted().joined(separator: ",")
                if fruitless.contains(shape) { return nil }
                // A quarantined worker gets nothing, but says nothing about the queue.
                if try Bool.fetchOne(db, sql: "SELECT quarantined FROM workers WHERE id = ?", arguments: [r.worker]) != false { return nil }
                let lease = try self.grantLease(db, worker: r.worker, request: r.request, now: now, policy: policy)
                if lease == nil { fruitless.insert(shape) }
                return lease
            }
        }
    }

    private func grantLease(_ db: Database, worker: String, request: JobRequest, now: Int64, policy: LeasePolicy) throws -> Lease? {
        let trainers = request.trainers.filter { !$0.isEmpty }
        guard !trainers.isEmpty else { return nil }
        // A job asking for k GPUs fits when the k-th largest free GPU has enough memory.
        let mems = request.free_gpus.map(\.memory_gb).sorted(by: >)
        var fit = ["gpus = 0"]
        var args: [DatabaseValueConvertible] = [now]
        for (k, m) in mems.enumerated() {
            fit.append("(gpus = \(k + 1) AND gpu_memory_gb <= ?)")
            args.append(m)
        }
        args.append(contentsOf: trainers)
        if try Bool.fetchOne(db, sql: "SELECT quarantined FROM workers WHERE id = ?", arguments: [worker]) != false {
            return nil
        }
        // Jobs a step budget cannot fit yet are passed over with those that need as many steps
        // or must wait behind them (`passOver`); the SQL conditions excluding them.
        var passed: [String] = []
        var row: Row?
        var reservation: Reservation?
        var tries = 0
        while tries < 1_000 {
            tries += 1
            let sql = """
                SELECT id, sweep_id, params, attempts, idx FROM jobs INDEXED BY jobs_ready
                WHERE status = 'queued' AND not_before_ms <= ? AND (\(fit.joined(separator: " OR ")))
                  AND trainer IN (\(trainers.map { _ in "?" }.joined(separator: ",")))
                  \(passed.map { "AND \($0)" }.joined(separator: " "))
                ORDER BY priority DESC, id LIMIT 1
                """
            guard let candidate = try Row.fetchOne(db, sql: sql, arguments: StatementArguments(args)) else { return nil }
            switch try reserve(db, job: candidate[0], sweep: candidate[1], now: now) {
            case .fits(let r): row = candidate; reservation = r
            case .notYet: passed.append(try passOver(db, job: candidate[0], sweep: candidate[1], index: candidate[4])); continue
            case .never: continue   // stopped: the next candidate
            }
            break
        }
        guard let row else { return nil }
        let job: Int64 = row[0], sweep: Int64 = row[1], attempts: Int = row[3]
        let number = attempts + 1
        let params = try self.proposeIfTPE(db, job: job, sweep: sweep, index: row[4], attempts: attempts, now: now) ?? (row[2] as String)
        guard let next = JobLifecycle.next(.queued, .leased) else { return nil }
        let pauseAt = try self.pauseAt(db, job: job)
        try db.execute(sql: """
            INSERT INTO attempts (job_id, number, worker_id, state, lease_expires_ms, started_ms, pause_at_step, start_step, reserved_steps)
            VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)
            """, arguments: [job, number, worker, now + policy.leaseMs, now, pauseAt, reservation?.start, reservation?.steps])
        try db.execute(sql: """
            UPDATE jobs SET status = ?, attempts = ?, current_attempt = ?, worker = ?, error = NULL,
                final_train_loss = NULL, best_val_loss = NULL, final_val_loss = NULL, tokens_per_s = NULL, metrics = NULL
            WHERE id = ?
            """, arguments: [next.rawValue, number, number, worker, job])
        let stored = (try? JSONValue.parse(Data(params.utf8))) ?? [:]
        let spec = JobSpec.jobFile(stored, job: Int(job), sweep: Int(sweep), attempt: number, pauseAtStep: pauseAt)
        return Lease(job: job, attempt: number, sweep: sweep, spec: spec, lease_ms: policy.leaseMs,
                     resume: try self.latestCheckpoint(db, job: job))
    }

    /// The checkpoint files of the newest earlier attempt that left any.
    func latestCheckpoint(_ db: Database, job: JobID) throws -> [ArtifactInfo] {
        let rows = try Row.fetchAll(db, sql: """
            SELECT ar.kind, ar.name, ar.sha256, ar.size FROM artifacts ar
            WHERE ar.attempt_id = (SELECT a.id FROM attempts a JOIN artifacts c ON c.attempt_id = a.id
                                   WHERE a.job_id = ? AND c.kind = 'checkpoint' ORDER BY a.number DESC LIMIT 1)
              AND ar.kind = 'checkpoint' ORDER BY ar.name
            """, arguments: [job])
        return rows.map { ArtifactInfo(kind: $0[0], name: $0[1], sha256: $0[2], size: $0[3]) }
    }

    /// The attempts the store has running on `worker`.
    public func runningAttempts(worker: String) throws -> Set<AttemptRef> {
        try read { db in
            Set(try Row.fetchAll(db, sql: "SELECT job_id, number FROM attempts WHERE state = 'running' AND worker_id = ?",
                                 arguments: [worker]).map { AttemptRef(job: $0[0], attempt: $0[1]) })
        }
    }

    /// Renews the leases a worker still holds; returns those it no longer holds.
    public func renew(worker: String, leases: [AttemptRef], now: Int64, policy: LeasePolicy) async throws -> [AttemptRef] {
        try await write { db in
            try db.execute(sql: "UPDATE workers SET last_seen_ms = ? WHERE id = ?", arguments: [now, worker])
            var lost: [AttemptRef] = []
            for ref in leases {
                try db.execute(sql: """
                    UPDATE attempts SET lease_expires_ms = ?, confirmed_ms = COALESCE(confirmed_ms, ?)
                    WHERE job_id = ? AND number = ? AND worker_id = ? AND state = 'running'
                      AND number = (SELECT current_attempt FROM jobs WHERE id = ? AND status = 'running')
                    """, arguments: [now + policy.leaseMs, now, ref.job, ref.attempt, worker, ref.job])
                if db.changesCount == 0 { lost.append(ref) }
            }
            return lost
        }
    }

    /// Expires leases not renewed in time. An attempt its worker had confirmed (named in a
    /// heartbeat or a registration) is `lost`: the job goes back to the queue after backoff, or
    /// fails for good. One never confirmed never reached its worker and is `returned`: back to
    /// the queue at once, counted against neither the job nor the worker. Returns the expired
    /// attempts, their workers and whether each was confirmed.
    public func expireLeases(now: Int64, policy: LeasePolicy) async throws -> [(ref: AttemptRef, worker: String, confirmed: Bool)] {
        try await write { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT job_id, number, worker_id, confirmed_ms IS NOT NULL FROM attempts WHERE state = 'running' AND lease_expires_ms < ?
                """, arguments: [now])
            var out: [(ref: AttemptRef, worker: String, confirmed: Bool)] = []
            for r in rows {
                let ref = AttemptRef(job: r[0], attempt: r[1]), confirmed: Bool = r[3]
                let outcome: AttemptOutcome = confirmed
                    ? .lost("lease expired (worker lost or unreachable)")
                    : .returned("the lease never reached the worker (it never confirmed the attempt)")
                try self.endAttempt(db, ref, worker: r[2], outcome: outcome, now: now, policy: policy)
                out.append((ref, r[2], confirmed))
            }
            return out
        }
    }

    /// Ends an attempt as its worker reports it. Refused (`stale_attempt`) unless the attempt
    /// is the job's current one, still running, and held by this worker: the fencing check
    /// that makes at most one attempt the job's result.
    /// A pause the store does not accept (`refusePause`) fails the attempt.
    /// Returns whether paused jobs were promoted (waiting workers may have work).
    @discardableResult
    public func finish(_ ref: AttemptRef, worker: String, outcome: AttemptOutcome, now: Int64, policy: LeasePolicy) async throws -> Bool {
        try await write { db in
            let id = try self.currentAttemptID(db, ref, worker: worker)
            var outcome = outcome
            if case .paused(let step) = outcome, let refused = try self.refusePause(db, attempt: id, step: step) {
                outcome = .failed(refused)
            }
            return try self.endAttempt(db, ref, worker: worker, outcome: outcome, now: now, policy: policy)
        }
    }

    /// Why a reported pause at `step` is not one (nil: it is). A pause is taken at the step the
    /// lease asked for, or at the step the attempt resumed from when its checkpoint was already
    /// past it (the trainer pauses at once, with the eval there), and leaves a checkpoint to
    /// resume from: without one the job could only start over.
    func refusePause(_ db: Database, attempt id: Int64, step: Int) throws -> String? {
        guard let asked = try Int.fetchOne(db, sql: "SELECT pause_at_step FROM attempts WHERE id = ?", arguments: [id]) else {
            return "the trainer paused at step \(step), but was not asked to pause"
        }
        if step != asked {
            let resumed = try Int.fetchOne(db, sql: """
                SELECT MAX(json_extract(event, '$.step')) FROM events WHERE attempt_id = ? AND json_extract(event, '$.event') = 'resumed'
                """, arguments: [id])
            guard step > asked, resumed == step else {
                return "the trainer paused at step \(step), but was asked to pause at step \(asked)"
                    + (resumed.map { " (it resumed at step \($0))" } ?? "")
            }
        }
        let checkpoint = try Bool.fetchOne(db, sql: "SELECT 1 FROM artifacts WHERE attempt_id = ? AND kind = 'checkpoint' LIMIT 1", arguments: [id]) ?? false
        return checkpoint ? nil : "the trainer paused at step \(step) without a checkpoint to resume from ($TUNA_CHECKPOINT_DIR was empty)"
    }

    /// The attempt's row id if `ref` is the live attempt held by `worker`, else `stale_attempt`.
    func currentAttemptID(_ db: Database, _ ref: AttemptRef, worker: String) throws -> Int64 {
        guard let row = try Row.fetchOne(db, sql: """
            SELECT a.id, a.state, a.worker_id, j.current_attempt, j.status FROM attempts a JOIN jobs j ON j.id = a.job_id
            WHERE a.job_id = ? AND a.number = ?
            """, arguments: [ref.job, ref.attempt]) else {
            throw StoreError.staleAttempt(ref, "no such attempt")
        }
        let state: String = row[1], holder: String = row[2], current: Int? = row[3], status: String = row[4]
        guard holder == worker else { throw StoreError.staleAttempt(ref, "held by another worker") }
        guard state == "running", current == ref.attempt, status == "running" else {
            throw StoreError.staleAttempt(ref, "the lease is no longer held (attempt \(state), job \(status))")
        }
        return row[0]
    }

    /// Ends an attempt and moves its job on; in a sweep whose ASHA promotes, then promotes what
    /// qualifies (returned: whether any job was) and settles the sweep's end.
    @discardableResult
    func endAttempt(_ db: Database, _ ref: AttemptRef, worker: String, outcome: AttemptOutcome, now: Int64, policy: LeasePolicy) throws -> Bool {
        let row = try Row.fetchOne(db, sql: "SELECT status, failures, max_attempts FROM jobs WHERE id = ?", arguments: [ref.job])
        guard let row, let status = JobStatus(rawValue: row[0]) else { return false }
        let failures: Int = row[1], maxAttempts: Int = row[2]
        let (attemptState, event, error) = JobLifecycle.end(outcome, failures: failures, maxAttempts: maxAttempts)
        guard let next = JobLifecycle.next(status, event) else { return false }
        try chargeSteps(db, ref, ended: attemptState)
        let stored = error.map { String($0.prefix(2000)) }
        try db.execute(sql: "UPDATE attempts SET state = ?, ended_ms = ?, error = ? WHERE job_id = ? AND number = ?",
                       arguments: [attemptState.rawValue, now, stored, ref.job, ref.attempt])
        switch event {
        case .succeeded:
            let adapter = try String.fetchOne(db, sql: """
                SELECT sha256 FROM artifacts WHERE attempt_id = (SELECT id FROM attempts WHERE job_id = ? AND number = ?)
                AND kind = 'adapter' ORDER BY (name = 'adapter_model.safetensors') DESC, name LIMIT 1
                """, arguments: [ref.job, ref.attempt])
            try db.execute(sql: "UPDATE jobs SET status = ?, adapter_sha256 = ?, error = NULL WHERE id = ?",
                           arguments: [next.rawValue, adapter, ref.job])
            try db.execute(sql: "UPDATE workers SET consecutive_failures = 0 WHERE id = ?", arguments: [worker])
        case .failed(let n, _):
            let delay = JobLifecycle.backoffMs(failures: n, baseMs: policy.backoffBaseMs, capMs: policy.backoffCapMs)
            try db.execute(sql: "UPDATE jobs SET status = ?, failures = ?, not_before_ms = ?, error = ?, current_attempt = NULL WHERE id = ?",
                           arguments: [next.rawValue, n, now + delay, stored, ref.job])
            if case .failed = outcome { try self.countWorkerFailure(db, worker: worker, why: stored ?? "", policy: policy) }
        case .paused:
            try db.execute(sql: "UPDATE jobs SET status = ?, current_attempt = NULL, error = NULL WHERE id = ?", arguments: [next.rawValue, ref.job])
            if case .paused(let step) = outcome { try self.recordPause(db, ref, step: step, now: now) }
            try db.execute(sql: "UPDATE workers SET consecutive_failures = 0 WHERE id = ?", arguments: [worker])
        default:
            try db.execute(sql: "UPDATE jobs SET status = ?, not_before_ms = ?, current_attempt = NULL, error = ? WHERE id = ?",
                           arguments: [next.rawValue, now, stored, ref.job])
        }
        return try self.settlePromotions(db, job: ref.job, now: now)
    }

    func countWorkerFailure(_ db: Database, worker: String, why: String, policy: LeasePolicy) throws {
        try db.execute(sql: "UPDATE workers SET consecutive_failures = consecutive_failures + 1 WHERE id = ?", arguments: [worker])
        try db.execute(sql: """
            UPDATE workers SET quarantined = 1, quarantine_reason = ?
            WHERE id = ? AND quarantined = 0 AND consecutive_failures >= ?
            """, arguments: ["\(policy.quarantineAfter) failed attempts in a row; last: \(why.prefix(300))", worker, policy.quarantineAfter])
    }

    public func isQuarantined(worker: String) throws -> Bool {
        try read { db in try Bool.fetchOne(db, sql: "SELECT quarantined FROM workers WHERE id = ?", arguments: [worker]) ?? false }
    }

    public func unquarantine(worker: String, now: Int64 = 0, by who: Actor = .local) async throws {
        try await write { db in
            try db.execute(sql: "UPDATE workers SET quarantined = 0, quarantine_reason = NULL, consecutive_failures = 0 WHERE id = ? OR name = ?",
                           arguments: [worker, worker])
            if db.changesCount == 0 { throw StoreError.notFound("no worker \(worker)") }
            try self.audit(db, now: now, who, "unquarantine", "worker \(worker)", nil)
        }
    }

    /// Whether `worker` holds the live attempt of a job that `sha256` belongs to (any of the
    /// job's attempts): a worker token may download only what its own jobs resume from.
    public func workerHolds(sha256: String, worker: String) throws -> Bool {
        try read { db in
            try Bool.fetchOne(db, sql: """
                SELECT 1 FROM artifacts a JOIN attempts t ON t.id = a.attempt_id JOIN jobs j ON j.id = t.job_id
                JOIN attempts cur ON cur.job_id = j.id AND cur.number = j.current_attempt
                WHERE a.sha256 = ? AND cur.worker_id = ? AND cur.state = 'running' LIMIT 1
                """, arguments: [sha256, worker]) ?? false
        }
    }
}
