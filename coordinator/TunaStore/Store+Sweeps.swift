import Foundation
import GRDB
import TunaCore

extension Store {
    /// Jobs stored per transaction: small enough that leases, heartbeats and queries wait at
    /// most a few tens of milliseconds behind a 1,000,000-job submit.
    public static let jobsPerChunk = 2_000

    /// Stores a validated sweep and its jobs. The sweep row comes first, with the first chunk
    /// of `jobsPerChunk` jobs; the others follow, each chunk its own transaction, and are
    /// dispatchable as soon as their chunk commits (every job was validated before the first
    /// was stored, so none will be taken back). Until the last chunk commits the sweep is marked
    /// `expanding`; a coordinator that dies meanwhile finishes it when it starts again
    /// (`resumeExpansion`): (sweep, idx) is unique and expansion is deterministic, so the job
    /// count comes out exact. A sweep of one chunk is one transaction, as before chunks.
    public func insertSweep(_ plan: SweepPlan, specYAML: String, now: Int64, by who: Actor = .local) async throws -> Submitted {
        let jobs = plan.jobs
        let first = try await onOwnThread { Store.rows(jobs, 0, min(Store.jobsPerChunk, jobs.count)) }
        let whole = first.count == plan.jobs.count
        // A sweep of several chunks is claimed in the transaction that creates it, so a resume
        // (which reads expanding sweeps in a transaction of its own) can never take it too.
        let claimed = ClaimedSweep()
        let sweep: SweepID
        do {
            sweep = try await write { db in
            try db.execute(sql: """
                INSERT INTO sweeps (name, spec_yaml, method, varying, created_ms, submitted_by, expanding, objective_metric, objective_mode,
                                    early_stopping, budget)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [plan.name, specYAML, plan.method.rawValue, jsonText(plan.varyingKeys), now, who.name, !whole,
                                 plan.objective.metric, plan.objective.mode.rawValue, plan.earlyStopping.map { jsonText($0) },
                                 plan.budget.map { jsonText($0) }])
            let sweep = db.lastInsertedRowID
            try self.audit(db, now: now, who, "submit", "sweep \(sweep)", "\(plan.name): \(plan.jobs.count) jobs")
            try self.insert(first, sweep: sweep, now: now, db)
            if !whole, self.storing.insert(sweep) { claimed.set(sweep) }
            return sweep
            }
        } catch {
            if let id = claimed.id { storing.remove(id) }  // rolled back: nothing to store
            throw error
        }
        if !whole {
            defer { if let id = claimed.id { storing.remove(id) } }
            do { try await storeJobs(plan, sweep: sweep, from: first.count, now: now) } catch StoreError.storage(let why) {
                // Accepted, partly stored: the rest follows once the disk has room (the
                // coordinator resumes expanding sweeps then, and at every start).
                throw StoreError.storage("sweep \(sweep) was accepted and is being stored; storing its remaining jobs waits for room: \(why)")
            }
        }
        return Submitted(sweep: sweep, jobs: plan.jobs.count)
    }

    /// Stores jobs `from...` of `plan`; the last chunk's transaction clears the sweep's
    /// `expanding` mark. Chunks are expanded off the writer thread, one per core at a time,
    /// while earlier ones commit in order.
    func storeJobs(_ plan: SweepPlan, sweep: SweepID, from: Int, now: Int64) async throws {
        let jobs = plan.jobs
        var next = from
        var expanding: [Task<[JobRow], Error>] = []
        func startChunk() {
            guard next < jobs.count else { return }
            let begin = next, end = min(next + Store.jobsPerChunk, jobs.count)
            expanding.append(Task { try await onOwnThread { Store.rows(jobs, begin, end) } })
            next = end
        }
        for _ in 0..<max(1, ProcessInfo.processInfo.activeProcessorCount) { startChunk() }
        var stored = from
        repeat {
            let rows = expanding.isEmpty ? [] : try await expanding.removeFirst().value
            startChunk()
            stored += rows.count
            let last = stored == jobs.count
            try await write { db in
                try self.insert(rows, sweep: sweep, now: now, db)
                if last { try db.execute(sql: "UPDATE sweeps SET expanding = 0 WHERE id = ?", arguments: [sweep]) }
            }
        } while !expanding.isEmpty
    }

    /// One chunk's rows, in the order of the INSERT's columns after (sweep_id).
    private static func rows(_ jobs: SweepJobs, _ from: Int, _ to: Int) -> [JobRow] {
        (from..<to).map { i in
            let job = jobs[i], p = job.spec
            return JobRow(index: i, hash: job.hash, params: job.paramsJSON, varying: jsonText(JSONValue.object(job.varying)),
                          trainer: p.trainer.rawValue, gpus: p.resources.gpus, gpuMemoryGB: p.resources.gpuMemoryGB,
                          priority: p.priority, maxAttempts: p.maxAttempts)
        }
    }

    struct JobRow: Sendable {
        let index: Int, hash: String, params: String, varying: String, trainer: String
        let gpus: Int, gpuMemoryGB: Double, priority: Int, maxAttempts: Int
    }

    private func insert(_ rows: [JobRow], sweep: SweepID, now: Int64, _ db: Database) throws {
        // A sweep cancelled while it expands gets its remaining jobs as cancelled.
        guard !rows.isEmpty else { return }
        let cancelled = try Bool.fetchOne(db, sql: "SELECT cancelled_ms IS NOT NULL FROM sweeps WHERE id = ?", arguments: [sweep]) ?? false
        let stmt = try db.cachedStatement(sql: """
            INSERT INTO jobs (sweep_id, idx, params_hash, params, varying, trainer, gpus, gpu_memory_gb,
                              priority, max_attempts, status, error, created_ms)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        let status = cancelled ? JobStatus.cancelled.rawValue : JobStatus.queued.rawValue
        let error: String? = cancelled ? "cancelled by user" : nil
        for r in rows {
            try stmt.execute(arguments: [sweep, r.index, r.hash, r.params, r.varying, r.trainer, r.gpus, r.gpuMemoryGB,
                                         r.priority, r.maxAttempts, status, error, now])
        }
        // The jobs' count (Schema v7: the only place jobs are created, so the only place
        // creation is counted; status changes are counted by triggers).
        try db.execute(sql: """
            INSERT INTO sweep_counts (sweep_id, status, jobs) VALUES (?, ?, ?)
            ON CONFLICT (sweep_id, status) DO UPDATE SET jobs = jobs + excluded.jobs
            """, arguments: [sweep, status, rows.count])
    }

    /// Whether any sweep is marked as still being stored (cheap: the sweeps table).
    public func hasExpandingSweeps() throws -> Bool {
        try read { db in try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM sweeps WHERE expanding = 1)") ?? false }
    }

    /// Finishes the sweeps left expanding by a stopped coordinator (at start) or by a submit
    /// the disk refused (once it has room), except those being stored now; returns their ids.
    public func resumeExpansion(now: Int64) async throws -> [SweepID] {
        let open = try read { db in try SweepID.fetchAll(db, sql: "SELECT id FROM sweeps WHERE expanding = 1 ORDER BY id") }
        var resumed: [SweepID] = []
        for id in open where storing.insert(id) {
            defer { storing.remove(id) }
            // Read again now that it is ours: another task may have finished it meanwhile.
            guard let s = try read({ db in
                try Row.fetchOne(db, sql: """
                    SELECT spec_yaml, (SELECT COALESCE(MAX(idx) + 1, 0) FROM jobs WHERE sweep_id = ?), extended FROM sweeps
                    WHERE id = ? AND expanding = 1
                    """, arguments: [id, id]).map { (yaml: $0[0] as String, stored: $0[1] as Int, extended: $0[2] as Int) }
            }) else { continue }
            let plan: SweepPlan
            do { plan = try SweepSpec.plan(yaml: s.yaml, extended: s.extended, stored: true) } catch {
                throw StoreError.database("sweep \(id) was accepted but its spec no longer expands: \(error)")
            }
            try await storeJobs(plan, sweep: id, from: s.stored, now: now)
            resumed.append(id)
        }
        return resumed
    }

    /// Adds `count` jobs to a random or TPE sweep: the spec is drawn on past its `count` (the
    /// draws so far are the stored jobs, unchanged), the new jobs are validated like a submit's
    /// and stored like an expansion (`extended` counts them, so a coordinator killed meanwhile
    /// finishes the same jobs when it starts again). A TPE sweep's new jobs are proposed when
    /// leased. Refused for a grid, a cancelled sweep, or one still being stored.
    public func extendSweep(_ sweep: SweepID, by count: Int, now: Int64, who: Actor = .local) async throws -> Submitted {
        guard count >= 1 else { throw StoreError.badRequest("extend needs a count of at least 1") }
        guard let s = try read({ db in
            try Row.fetchOne(db, sql: """
                SELECT spec_yaml, (SELECT COALESCE(MAX(idx) + 1, 0) FROM jobs WHERE sweep_id = ?), extended, expanding, cancelled_ms
                FROM sweeps WHERE id = ?
                """, arguments: [sweep, sweep])
        }) else { throw StoreError.notFound("no sweep \(sweep)") }
        let (yaml, stored, extended): (String, Int, Int) = (s[0], s[1], s[2])
        if (s[4] as Int64?) != nil { throw StoreError.badRequest("sweep \(sweep) was cancelled; submit a new one") }
        guard !(s[3] as Bool), storing.insert(sweep) else { throw StoreError.badRequest("sweep \(sweep) is still being stored; extend it once it is whole") }
        defer { storing.remove(sweep) }
        let plan = try await onOwnThread { try SweepSpec.plan(yaml: yaml, extended: extended + count, stored: true) }
        guard plan.jobs.count == stored + count else {
            throw StoreError.database("sweep \(sweep) holds \(stored) jobs but its spec drew \(plan.jobs.count - count) before this extension")
        }
        try await write { db in
            try db.execute(sql: "UPDATE sweeps SET extended = extended + ?, expanding = 1 WHERE id = ?", arguments: [count, sweep])
            try self.audit(db, now: now, who, "extend", "sweep \(sweep)", "\(count) jobs added")
        }
        try await storeJobs(plan, sweep: sweep, from: stored, now: now)
        return Submitted(sweep: sweep, jobs: count)
    }

    /// Requeues the failed and cancelled jobs of a sweep (their failure count starts over);
    /// succeeded, queued and running jobs are left alone.
    public func retry(sweep: SweepID, now: Int64 = 0, by who: Actor = .local) async throws -> Int {
        try await write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM sweeps WHERE id = ?", arguments: [sweep]) == true else {
                throw StoreError.notFound("no sweep \(sweep)")
            }
            let retry = JobLifecycle.bulk(.retried)
            try db.execute(sql: """
                UPDATE jobs SET status = ?, failures = 0, not_before_ms = 0, error = NULL, current_attempt = NULL
                WHERE sweep_id = ? AND status IN \(retry.from.sqlList)
                """, arguments: [retry.to.rawValue, sweep])
            let n = db.changesCount
            try db.execute(sql: "UPDATE sweeps SET cancelled_ms = NULL WHERE id = ?", arguments: [sweep])
            try self.audit(db, now: now, who, "retry", "sweep \(sweep)", "\(n) jobs requeued")
            return n
        }
    }

    /// Cancels queued and running jobs of a sweep or one job. Returns the running attempts,
    /// whose workers must be told to stop; their late results are refused from now on.
    public func cancel(_ target: CancelRequest, now: Int64, by who: Actor = .local) async throws -> (count: Int, running: [(AttemptRef, String)]) {
        try await write { db in
            let (clause, arg): (String, Int64)
            if let job = target.job { (clause, arg) = ("j.id = ?", job) }
            else if let sweep = target.sweep { (clause, arg) = ("j.sweep_id = ?", sweep) }
            else { throw StoreError.badRequest("cancel needs a sweep or a job") }
            let exists = try Bool.fetchOne(db, sql: "SELECT 1 FROM jobs j WHERE \(clause) LIMIT 1", arguments: [arg]) == true
            if !exists { throw StoreError.notFound("no \(target.job != nil ? "job" : "sweep") \(arg)") }
            let running = try Row.fetchAll(db, sql: """
                SELECT j.id, a.number, a.worker_id FROM jobs j JOIN attempts a ON a.job_id = j.id AND a.number = j.current_attempt
                WHERE \(clause) AND j.status = 'running' AND a.state = 'running'
                """, arguments: [arg]).map { (AttemptRef(job: $0[0], attempt: $0[1]), $0[2] as String) }
            for (ref, _) in running {
                try self.chargeSteps(db, ref)
                try db.execute(sql: "UPDATE attempts SET state = ?, ended_ms = ?, error = 'cancelled' WHERE job_id = ? AND number = ?",
                               arguments: [AttemptState.cancelled.rawValue, now, ref.job, ref.attempt])
            }
            let cancel = JobLifecycle.bulk(.cancelled)
            try db.execute(sql: "UPDATE jobs SET status = ?, error = 'cancelled by user' WHERE \(clause.replacingOccurrences(of: "j.", with: "")) AND status IN \(cancel.from.sqlList)",
                           arguments: [cancel.to.rawValue, arg])
            let n = db.changesCount
            // One job of a promoting sweep cancelled: the rest of the sweep may have ended with it.
            if let job = target.job { try self.settlePromotions(db, job: job, now: now) }
            if target.job == nil { try db.execute(sql: "UPDATE sweeps SET cancelled_ms = ? WHERE id = ?", arguments: [now, arg]) }
            try self.audit(db, now: now, who, "cancel", "\(target.job != nil ? "job" : "sweep") \(arg)", "\(n) jobs cancelled")
            return (n, running)
        }
    }
}

extension Store {
    /// Who the sweep of `sweep` (or of `job`) was submitted by: nil for sweeps stored before
    /// tokens had names, `notFound` if there is no such sweep or job.
    public func owner(sweep: SweepID?, job: JobID?) throws -> String? {
        try read { db in
            let row: Row?
            if let job { row = try Row.fetchOne(db, sql: "SELECT s.submitted_by FROM jobs j JOIN sweeps s ON s.id = j.sweep_id WHERE j.id = ?", arguments: [job]) }
            else if let sweep { row = try Row.fetchOne(db, sql: "SELECT submitted_by FROM sweeps WHERE id = ?", arguments: [sweep]) }
            else { throw StoreError.badRequest("needs a sweep or a job") }
            guard let row else { throw StoreError.notFound("no \(job != nil ? "job \(job!)" : "sweep \(sweep!)")") }
            return row[0]
        }
    }
}
