import Foundation
import GRDB
import TunaCore

/// `sweep.max_steps_total`: a sweep never leases more steps than its budget. Each attempt is
/// leased with a reservation, the steps from where it starts (the rung it was last promoted
/// from, else 0) to where it stops (its `pause_at_step`, else the job's length); a running
/// attempt counts its reservation, an ended one the steps it trained (`chargeSteps`: what a
/// trainer trained past its lease, after a failed resume say, is charged too, so what is left is
/// never overstated). A job whose next attempt does not fit what is left waits while running
/// attempts may still give steps back, and is stopped, with the reason, once nothing can.
extension Store {
    struct Reservation { var start: Int; var steps: Int }
    enum Fit { case fits(Reservation?), notYet, never }

    func reserve(_ db: Database, job: JobID, sweep: SweepID, now: Int64) throws -> Fit {
        guard let text = try String.fetchOne(db, sql: "SELECT budget FROM sweeps WHERE id = ?", arguments: [sweep]),
              let budget = try? JSONDecoder().decode(StepBudget.self, from: Data(text.utf8)) else { return .fits(nil) }
        let start = try Int.fetchOne(db, sql: "SELECT MAX(rung) FROM decisions WHERE job_id = ? AND kind = 'promoted'", arguments: [job]) ?? 0
        let end = try pauseAt(db, job: job) ?? budget.jobSteps
        let need = max(0, end - start)
        let row = try Row.fetchOne(db, sql: """
            SELECT COALESCE(SUM(CASE WHEN a.state = 'running' THEN 0 ELSE COALESCE(a.charged_steps, a.reserved_steps, 0) END), 0),
                   COALESCE(SUM(CASE WHEN a.state = 'running' THEN COALESCE(a.reserved_steps, 0) ELSE 0 END), 0)
            FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE j.sweep_id = ?
            """, arguments: [sweep])!
        let (trained, reserved): (Int, Int) = (row[0], row[1])
        if trained + reserved + need <= budget.total { return .fits(Reservation(start: start, steps: need)) }
        if trained + need <= budget.total { return .notYet }
        // Never: even if every running attempt gave all its steps back.
        let reason = "stopped before step \(end): the sweep's step budget of \(budget.total) is spent (\(trained) trained"
            + (reserved > 0 ? ", \(reserved) reserved by running jobs" : "") + "; this attempt needs \(need))"
        guard let stop = JobLifecycle.next(.queued, .stopped) else { return .never }
        try db.execute(sql: "UPDATE jobs SET status = ?, error = ? WHERE id = ?", arguments: [stop.rawValue, reason, job])
        try recordDecision(db, sweep: sweep, job: job, .stopped, rung: end, reason: reason, now: now)
        try settlePromotions(db, job: job, now: now)
        return .never
    }

    /// The jobs a lease passes over with `job`, which its sweep's budget cannot fit yet, as an
    /// SQL condition on `jobs`: a promotion passes over its whole sweep (promotions come first:
    /// the sweep's new jobs may not take the steps it waits for); a job not promoted passes
    /// over the jobs of its sweep's bracket, which need as many steps (the first rung of the
    /// bracket, or the job's length), and the other brackets' smaller first rungs still run.
    func passOver(_ db: Database, job: JobID, sweep: SweepID, index: Int) throws -> String {
        let promotion = try Bool.fetchOne(db, sql: "SELECT 1 FROM decisions WHERE job_id = ? AND kind = 'promoted' LIMIT 1", arguments: [job]) ?? false
        guard !promotion, let r = try sweepRule(db, job: job), r.rule.type == .asha, r.rule.brackets > 1 else { return "sweep_id != \(sweep)" }
        return "NOT (sweep_id = \(sweep) AND idx % \(r.rule.brackets) = \(index % r.rule.brackets))"
    }

    /// Charges an ending attempt of a budgeted sweep the steps it trained: from the step it
    /// resumed at (its `resumed` event; without one it started from step 0, whatever it was
    /// leased for) to the highest step it reported (`step`, `eval`, `checkpoint`, `paused`
    /// events), over its reservation if it trained more (a resume
    /// that failed, a trainer that ignored its pause: the overrun is charged, never hidden).
    /// An attempt that ended well without reporting a step or a resume is charged its reservation.
    func chargeSteps(_ db: Database, _ ref: AttemptRef, ended: AttemptState? = nil) throws {
        guard let a = try Row.fetchOne(db, sql: "SELECT id, reserved_steps FROM attempts WHERE job_id = ? AND number = ?",
                                       arguments: [ref.job, ref.attempt]),
              let reserved = a[1] as Int? else { return }
        let id: Int64 = a[0]
        let steps = try Row.fetchOne(db, sql: """
            SELECT MAX(CASE WHEN json_extract(event, '$.event') NOT IN ('resumed', 'baseline') THEN json_extract(event, '$.step') END),
                   MAX(CASE WHEN json_extract(event, '$.event') = 'resumed' THEN json_extract(event, '$.step') END)
            FROM events WHERE attempt_id = ?
            """, arguments: [id])
        let last: Int? = steps?[0], resumed: Int? = steps?[1]
        let trained: Int
        if let last { trained = max(0, last - (resumed ?? 0)) }
        else if resumed == nil, ended == .succeeded || ended == .paused { trained = reserved }
        else { trained = 0 }
        try db.execute(sql: "UPDATE attempts SET charged_steps = ? WHERE id = ?", arguments: [trained, id])
    }
}
