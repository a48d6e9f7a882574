import Foundation
import GRDB
import TunaCore

/// The live side of `sweep.early_stopping`: what the rule (EarlyStopping, pure) is given from
/// the database, and what its answers change there. Every decision is made in the transaction
/// that stores the values it was made from, and is written to `decisions` with its reason, so a
/// coordinator killed at any point restarts with the same decisions and makes the same next ones.
extension Store {
    /// A sweep's rule, read with the job it is applied to.
    struct SweepRule {
        var sweep: SweepID
        var rule: EarlyStopping
        var objective: Objective
        /// The job's bracket (asha with brackets > 1).
        var bracket: Int
    }

    /// An attempt the rule stopped: its worker must be told.
    public typealias StoppedAttempt = (ref: AttemptRef, worker: String, reason: String)

    func sweepRule(_ db: Database, job: JobID) throws -> SweepRule? {
        guard let row = try Row.fetchOne(db, sql: """
                SELECT s.id, s.early_stopping, s.objective_metric, s.objective_mode, j.idx FROM jobs j JOIN sweeps s ON s.id = j.sweep_id
                WHERE j.id = ? AND s.early_stopping IS NOT NULL
                """, arguments: [job]),
              let rule = try? JSONDecoder().decode(EarlyStopping.self, from: Data((row[1] as String).utf8)) else { return nil }
        return SweepRule(sweep: row[0], rule: rule, objective: Store.objective(metric: row[2], mode: row[3]), bracket: rule.bracket(ofIndex: row[4]))
    }

    /// The steps a job has recorded values at.
    func recordedSteps(_ db: Database, sweep: SweepID, job: JobID) throws -> Set<Int> {
        Set(try Int.fetchAll(db, sql: "SELECT rung FROM rungs WHERE sweep_id = ? AND job_id = ?", arguments: [sweep, job]))
    }

    /// Where a new attempt of `job` is to pause (nil: train to the end, or no promoting rule):
    /// the first rung above the highest it was promoted from, whatever rungs it recorded: an
    /// attempt that recorded a rung's eval but failed before it paused there pauses there again
    /// (a job goes past a rung only by promotion).
    func pauseAt(_ db: Database, job: JobID) throws -> Int? {
        guard let r = try sweepRule(db, job: job), r.rule.promotes else { return nil }
        let promoted = try Int.fetchOne(db, sql: "SELECT MAX(rung) FROM decisions WHERE job_id = ? AND kind = 'promoted'", arguments: [job])
        return r.rule.pauseAt(recorded: promoted.map { [$0] } ?? [], bracket: r.bracket)
    }

    func recordDecision(_ db: Database, sweep: SweepID, job: JobID, _ kind: DecisionRow.Kind, rung: Int, reason: String, now: Int64) throws {
        try db.execute(sql: "INSERT INTO decisions (sweep_id, job_id, kind, rung, at_ms, reason) VALUES (?, ?, ?, ?, ?, ?)",
                       arguments: [sweep, job, kind.rawValue, rung, now, reason])
    }

    func decisions(_ db: Database, job: JobID) throws -> [DecisionRow] {
        try Row.fetchAll(db, sql: "SELECT job_id, kind, rung, at_ms, reason FROM decisions WHERE job_id = ? ORDER BY id", arguments: [job]).map {
            DecisionRow(job: $0[0], kind: DecisionRow.Kind(rawValue: $0[1]) ?? .stopped, rung: $0[2], at_ms: $0[3], reason: $0[4])
        }
    }

    /// Every decision of a sweep's rule, in the order they were made.
    public func decisions(sweep: SweepID) throws -> [DecisionRow] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT job_id, kind, rung, at_ms, reason FROM decisions WHERE sweep_id = ? ORDER BY id", arguments: [sweep]).map {
                DecisionRow(job: $0[0], kind: DecisionRow.Kind(rawValue: $0[1]) ?? .stopped, rung: $0[2], at_ms: $0[3], reason: $0[4])
            }
        }
    }

    /// Records a running job's evals where its sweep's rule reads them, then applies the rule:
    /// asha stopping judges every rung the job reached, asha promotion promotes the paused jobs
    /// that qualify now, median judges this job. Nothing for a sweep without a rule.
    func applyEarlyStopping(_ db: Database, job: JobID, evals: [JSONValue], now: Int64) throws -> (stopped: [StoppedAttempt], promoted: Bool) {
        guard let r = try sweepRule(db, job: job) else { return ([], false) }
        var recorded = try recordedSteps(db, sweep: r.sweep, job: job)
        var latest: Int?
        for e in evals {
            guard let step = e["step"]?.intValue, let value = EarlyStopping.value(of: e, objective: r.objective) else { continue }
            for at in r.rule.recordedSteps(at: step, recorded: recorded, bracket: r.bracket) {
                try db.execute(sql: "INSERT INTO rungs (sweep_id, rung, job_id, value, step, bracket) VALUES (?, ?, ?, ?, ?, ?)",
                               arguments: [r.sweep, at, job, value, step, r.bracket])
                recorded.insert(at)
            }
            latest = max(latest ?? step, step)
        }
        switch (r.rule.type, r.rule.mode) {
        case (.asha, .promotion):
            return ([], try promote(db, r, now: now))
        case (.asha, .stopping):
            // The rungs it reached now, and those it reached before: a job that was queued again
            // (a lost lease) when it fell outside a rung's best is judged again when it runs.
            var stopped: [StoppedAttempt] = []
            for rung in recorded.sorted() {
                let rows = try Row.fetchAll(db, sql: "SELECT job_id, value, step FROM rungs WHERE sweep_id = ? AND rung = ? AND bracket = ?",
                                            arguments: [r.sweep, rung, r.bracket])
                let judgement = r.rule.judge(rows.map { (job: $0[0], value: $0[1]) }, objective: r.objective)
                let at = Dictionary(uniqueKeysWithValues: rows.map { ($0[0] as JobID, (value: $0[1] as Double, step: $0[2] as Int)) })
                for out in judgement.out {
                    guard let v = at[out] else { continue }
                    let reason = r.rule.explain(step: v.step, rung: rung, value: v.value, objective: r.objective, judgement: judgement)
                    if let s = try stopRunning(db, job: out, sweep: r.sweep, rung: rung, reason: reason, now: now) { stopped.append(s) }
                }
            }
            return (stopped, false)
        case (.median, _):
            guard let step = latest else { return ([], false) }
            let mine = try Row.fetchAll(db, sql: "SELECT rung, value FROM rungs WHERE sweep_id = ? AND job_id = ?", arguments: [r.sweep, job])
                .map { (step: $0[0] as Int, value: $0[1] as Double) }
            var completed: [JobID: [(step: Int, value: Double)]] = [:]
            for row in try Row.fetchAll(db, sql: """
                    SELECT r.job_id, r.rung, r.value FROM rungs r JOIN jobs j ON j.id = r.job_id
                    WHERE r.sweep_id = ? AND j.status = 'succeeded'
                    """, arguments: [r.sweep]) {
                completed[row[0], default: []].append((row[1], row[2]))
            }
            guard let verdict = r.rule.medianStop(step: step, job: mine, completed: Array(completed.values), objective: r.objective) else { return ([], false) }
            let reason = r.rule.explainMedian(step: step, best: verdict.best, median: verdict.median, completed: verdict.completed, objective: r.objective)
            return ((try stopRunning(db, job: job, sweep: r.sweep, rung: step, reason: reason, now: now)).map { [$0] } ?? [], false)
        }
    }

    /// Stops `job` if it is running: its attempt and the job become `stopped` with `reason`.
    func stopRunning(_ db: Database, job: JobID, sweep: SweepID, rung: Int, reason: String, now: Int64) throws -> StoppedAttempt? {
        guard let running = try Row.fetchOne(db, sql: """
                SELECT a.number, a.worker_id FROM jobs j JOIN attempts a ON a.job_id = j.id AND a.number = j.current_attempt
                WHERE j.id = ? AND j.status = 'running' AND a.state = 'running'
                """, arguments: [job]),
              let next = JobLifecycle.next(.running, .stopped) else { return nil }
        let ref = AttemptRef(job: job, attempt: running[0])
        try chargeSteps(db, ref)
        try db.execute(sql: "UPDATE attempts SET state = ?, ended_ms = ?, error = ? WHERE job_id = ? AND number = ?",
                       arguments: [AttemptState.stopped.rawValue, now, reason, ref.job, ref.attempt])
        try db.execute(sql: "UPDATE jobs SET status = ?, error = ? WHERE id = ?", arguments: [next.rawValue, reason, job])
        try recordDecision(db, sweep: sweep, job: job, .stopped, rung: rung, reason: reason, now: now)
        return (ref, running[1], reason)
    }

    /// The paused jobs of a sweep and the rung each paused at.
    func pausedJobs(_ db: Database, _ r: SweepRule) throws -> [EarlyStopping.Paused] {
        try Row.fetchAll(db, sql: """
            SELECT j.id, a.pause_at_step, j.idx FROM jobs j JOIN attempts a ON a.job_id = j.id AND a.number = j.attempts
            WHERE j.sweep_id = ? AND j.status = 'paused'
            """, arguments: [r.sweep]).map { EarlyStopping.Paused(job: $0[0], rung: $0[1] ?? 0, bracket: r.rule.bracket(ofIndex: $0[2])) }
    }

    /// The values a promotion at a rung is judged among. A job cancelled or failed for good
    /// without being promoted from the rung is left out: it will never use a slot there, and
    /// counting it would hold back the next best for good.
    func rungValues(_ db: Database, sweep: SweepID, rung: Int, bracket: Int) throws -> [(job: JobID, value: Double)] {
        try Row.fetchAll(db, sql: """
            SELECT r.job_id, r.value FROM rungs r JOIN jobs j ON j.id = r.job_id
            WHERE r.sweep_id = ? AND r.rung = ? AND r.bracket = ?
              AND (j.status NOT IN ('cancelled', 'failed')
                   OR EXISTS (SELECT 1 FROM decisions d WHERE d.job_id = r.job_id AND d.kind = 'promoted' AND d.rung = r.rung))
            """, arguments: [sweep, rung, bracket]).map { (job: $0[0] as JobID, value: $0[1] as Double) }
    }

    /// Promotion mode: promotes every paused job of the sweep the rule promotes now
    /// (EarlyStopping.promote): queued again at once, so a worker asking for work gets it before
    /// any job of the sweep that never ran (promoted jobs have the lower ids). Returns whether any was.
    func promote(_ db: Database, _ r: SweepRule, now: Int64) throws -> Bool {
        let paused = try pausedJobs(db, r)
        guard !paused.isEmpty else { return false }
        let decisions = try r.rule.promote(paused: paused, values: { try rungValues(db, sweep: r.sweep, rung: $0, bracket: $1) }, objective: r.objective)
        try queuePromoted(db, r, decisions, now: now)
        return !decisions.isEmpty
    }

    func queuePromoted(_ db: Database, _ r: SweepRule, _ decisions: [EarlyStopping.Decision], now: Int64) throws {
        guard let next = JobLifecycle.next(.paused, .promoted) else { return }
        for d in decisions {
            try db.execute(sql: "UPDATE jobs SET status = ?, not_before_ms = ?, error = NULL WHERE id = ? AND status = 'paused'",
                           arguments: [next.rawValue, now, d.job])
            try recordDecision(db, sweep: r.sweep, job: d.job, .promoted, rung: d.rung, reason: d.reason, now: now)
        }
    }

    /// After an attempt of a job in a promoting sweep ended (paused, succeeded, failed, lost,
    /// cancelled): promotes what qualifies now; when the sweep then has nothing queued or
    /// running (and is not still being stored), settles it (EarlyStopping.settle: drains its
    /// highest rung, or stops the paused jobs left). Returns whether a job was promoted.
    @discardableResult
    func settlePromotions(_ db: Database, job: JobID, now: Int64) throws -> Bool {
        guard let r = try sweepRule(db, job: job), r.rule.promotes else { return false }
        let promoted = try promote(db, r, now: now)
        let live = try Int.fetchOne(db, sql: """
            SELECT COALESCE(SUM(jobs), 0) FROM sweep_counts WHERE sweep_id = ? AND status IN ('queued', 'running')
            """, arguments: [r.sweep]) ?? 0
        let expanding = try Bool.fetchOne(db, sql: "SELECT expanding FROM sweeps WHERE id = ?", arguments: [r.sweep]) ?? false
        let paused = try pausedJobs(db, r)
        guard live == 0, !expanding, !paused.isEmpty, let stop = JobLifecycle.next(.paused, .stopped) else { return promoted }
        let settled = try r.rule.settle(paused: paused, values: { try rungValues(db, sweep: r.sweep, rung: $0, bracket: $1) }, objective: r.objective)
        try queuePromoted(db, r, settled.promoted, now: now)
        for d in settled.stopped {
            try db.execute(sql: "UPDATE jobs SET status = ?, error = ? WHERE id = ?", arguments: [stop.rawValue, d.reason, d.job])
            try recordDecision(db, sweep: r.sweep, job: d.job, .stopped, rung: d.rung, reason: d.reason, now: now)
        }
        return promoted || !settled.promoted.isEmpty
    }

    /// Records a job's pause: the attempt ended at (or, resumed past it, after) the rung it was
    /// asked to pause at.
    func recordPause(_ db: Database, _ ref: AttemptRef, step: Int, now: Int64) throws {
        guard let r = try sweepRule(db, job: ref.job) else { return }
        let rung = try Int.fetchOne(db, sql: "SELECT pause_at_step FROM attempts WHERE job_id = ? AND number = ?",
                                    arguments: [ref.job, ref.attempt]) ?? step
        let value = try Double.fetchOne(db, sql: "SELECT value FROM rungs WHERE sweep_id = ? AND rung = ? AND job_id = ?",
                                        arguments: [r.sweep, rung, ref.job])
        try recordDecision(db, sweep: r.sweep, job: ref.job, .paused, rung: rung,
                           reason: r.rule.explainPause(step: step, value: value, objective: r.objective), now: now)
    }
}
