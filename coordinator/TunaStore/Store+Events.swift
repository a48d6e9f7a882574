import Foundation
import GRDB
import TunaCore

extension Store {
    /// What storing a batch of events did: the last sequence number it covers, the running
    /// attempts the sweep's early-stopping rule stopped because of it (their workers must be
    /// told), with the reason stored for each, and whether it promoted paused jobs (queued
    /// again: waiting workers may have work).
    public struct Ingested: Sendable {
        public var through: Int64
        public var stopped: [StoppedAttempt]
        public var promoted: Bool
        /// The job's sweep and the curve points this batch added (the dashboard's live charts).
        public var sweep: SweepID
        public var points: [CurvePoint]
        /// Events stored by this batch (a resent batch's are already there).
        public var stored: Int
    }

    /// `ingest`, for callers that only need the acknowledgement.
    public func appendEvents(_ batch: Events, worker: String, now: Int64) async throws -> Int64 {
        try await ingest(batch, worker: worker, now: now).through
    }

    /// Stores a batch of trainer events of a live attempt and updates the job's summary
    /// (final train loss, best and final validation loss, tokens/s) in the same transaction,
    /// and with it records the job's evals at its sweep's rungs and applies the early-stopping
    /// rule (`EarlyStopping`), so a decision is durable with the values it was made from.
    /// Events already stored (a batch resent after a reconnect) are ignored by (attempt, seq).
    public func ingest(_ batch: Events, worker: String, now: Int64) async throws -> Ingested {
        try await write { db in
            let ref = AttemptRef(job: batch.job, attempt: batch.attempt)
            let attemptID = try self.currentAttemptID(db, ref, worker: worker)
            let insert = try db.makeStatement(sql: "INSERT OR IGNORE INTO events (attempt_id, seq, at_ms, event) VALUES (?, ?, ?, ?)")
            var trainLoss: Double?, valLoss: Double?, bestVal: Double?, tps: Double?
            var metrics: [String: JSONValue] = [:]
            var evals: [JSONValue] = []
            var points: [CurvePoint] = []
            var stored = 0
            var through: Int64 = -1
            for e in batch.events {
                try insert.execute(arguments: [attemptID, e.seq, e.at_ms, jsonText(e.event)])
                through = max(through, e.seq)
                guard db.changesCount > 0 else { continue }
                stored += 1
                let kind = TrainerEvent.kind(of: e.event)
                if let p = CurvePoint(kind, event: e.event) { points.append(p) }
                switch kind {
                case .step:
                    if let l = e.event["loss"]?.doubleValue { trainLoss = l }
                    if let t = e.event["tokens_per_s"]?.doubleValue { tps = t }
                case .eval:
                    evals.append(e.event)
                    if let l = e.event["loss"]?.doubleValue { valLoss = l; bestVal = min(bestVal ?? l, l) }
                    metrics.merge(Self.evalMetrics(e.event)) { $1 }
                case .baseline:
                    for (field, name) in [("loss", "baseline_loss"), ("general_loss", "baseline_general_loss"),
                                          ("exact_match", "baseline_exact_match"), ("answered", "baseline_answered")] {
                        if let v = e.event[field]?.doubleValue, v.isFinite { metrics[name] = .number(v) }
                    }
                default: break
                }
            }
            if !metrics.isEmpty {
                try db.execute(sql: "UPDATE jobs SET metrics = json_patch(COALESCE(metrics, '{}'), ?) WHERE id = ?",
                               arguments: [JSONValue.object(metrics).canonicalJSON, batch.job])
            }
            if trainLoss != nil || valLoss != nil || tps != nil {
                try db.execute(sql: """
                    UPDATE jobs SET final_train_loss = COALESCE(?, final_train_loss),
                                    final_val_loss = COALESCE(?, final_val_loss),
                                    best_val_loss = CASE WHEN ? IS NULL THEN best_val_loss
                                                         WHEN best_val_loss IS NULL OR ? < best_val_loss THEN ? ELSE best_val_loss END,
                                    tokens_per_s = COALESCE(?, tokens_per_s)
                    WHERE id = ?
                    """, arguments: [trainLoss, valLoss, bestVal, bestVal, bestVal, tps, batch.job])
            }
            try self.recordPoints(db, job: batch.job, points)
            let applied: (stopped: [StoppedAttempt], promoted: Bool) = evals.isEmpty ? ([], false) : try self.applyEarlyStopping(db, job: batch.job, evals: evals, now: now)
            let sweep = try SweepID.fetchOne(db, sql: "SELECT sweep_id FROM jobs WHERE id = ?", arguments: [batch.job]) ?? 0
            return Ingested(through: through, stopped: applied.stopped, promoted: applied.promoted, sweep: sweep, points: points, stored: stored)
        }
    }

    /// An eval event's numbers beyond what the summary has columns for (loss, tokens) and its
    /// position (step, epoch, keep): a prune job's KL, top-1 agreement, pruned-hit and routing
    /// mass shares, general-set figures. Empty for a LoRA job's eval.
    static func evalMetrics(_ event: JSONValue) -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for (k, v) in event.objectValue ?? [:] where !Objective.notMetrics.contains(k) {
            if let d = v.doubleValue, d.isFinite { out[k] = .number(d) }
        }
        return out
    }

    /// The event log of a job: its latest attempt's by default, or one attempt's.
    public func events(job: JobID, attempt: Int?, afterSeq: Int64? = nil) throws -> [EventRow] {
        try read { db in
            guard let latest = try Int.fetchOne(db, sql: "SELECT attempts FROM jobs WHERE id = ?", arguments: [job]) else {
                throw StoreError.notFound("no job \(job)")
            }
            let number = attempt ?? latest
            return try Row.fetchAll(db, sql: """
                SELECT a.number, m.seq, m.at_ms, m.event FROM events m JOIN attempts a ON a.id = m.attempt_id
                WHERE a.job_id = ? AND a.number = ? AND m.seq > ? ORDER BY m.seq
                """, arguments: [job, number, afterSeq ?? -1]).map {
                EventRow(attempt: $0[0], seq: $0[1], at_ms: $0[2], event: (try? JSONValue.parse(Data(($0[3] as String).utf8))) ?? .null)
            }
        }
    }
}
