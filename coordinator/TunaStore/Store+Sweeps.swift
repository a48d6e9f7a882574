import Foundation
import GRDB
import TunaCore

extension Store {
    /// Stores a validated sweep and all its jobs in one transaction: a sweep is there whole
    /// or not at all, and (sweep, params_hash) is unique, so its job count is exact.
    public func insertSweep(_ plan: SweepPlan, specYAML: String, now: Int64, by who: Actor = .local) async throws -> Submitted {
        try await write { db in
            try db.execute(sql: "INSERT INTO sweeps (name, spec_yaml, method, varying, created_ms, submitted_by) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [plan.name, specYAML, plan.method.rawValue, jsonText(plan.varyingKeys), now, who.name])
            let sweep = db.lastInsertedRowID
            try self.audit(db, now: now, who, "submit", "sweep \(sweep)", "\(plan.name): \(plan.jobs.count) jobs")
            let stmt = try db.makeStatement(sql: """
                INSERT INTO jobs (sweep_id, idx, params_hash, params, varying, trainer, gpus, gpu_memory_gb,
                                  priority, max_attempts, status, created_ms)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)
                """)
            for job in plan.jobs {
                let p = job.spec
                try stmt.execute(arguments: [
                    sweep, job.index, job.hash, job.paramsJSON, jsonText(JSONValue.object(job.varying)),
                    p.trainer.rawValue, p.resources.gpus, p.resources.gpuMemoryGB, p.priority, p.maxAttempts,
                    now,
                ])
            }
            return Submitted(sweep: sweep, jobs: plan.jobs.count)
        }
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
                try db.execute(sql: "UPDATE attempts SET state = ?, ended_ms = ?, error = 'cancelled' WHERE job_id = ? AND number = ?",
                               arguments: [AttemptState.cancelled.rawValue, now, ref.job, ref.attempt])
            }
            let cancel = JobLifecycle.bulk(.cancelled)
            try db.execute(sql: "UPDATE jobs SET status = ?, error = 'cancelled by user' WHERE \(clause.replacingOccurrences(of: "j.", with: "")) AND status IN \(cancel.from.sqlList)",
                           arguments: [cancel.to.rawValue, arg])
            let n = db.changesCount
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
