import Foundation
import GRDB
import TunaCore

extension Store {
    /// Stores a batch of trainer events of a live attempt and updates the job's summary
    /// (final train loss, best and final validation loss, tokens/s) in the same transaction.
    /// Events already stored (a batch resent after a reconnect) are ignored by (attempt, seq).
    public func appendEvents(_ batch: Events, worker: String, now: Int64) async throws -> Int64 {
        try await write { db in
            let ref = AttemptRef(job: batch.job, attempt: batch.attempt)
            let attemptID = try self.currentAttemptID(db, ref, worker: worker)
            let insert = try db.makeStatement(sql: "INSERT OR IGNORE INTO metrics (attempt_id, seq, at_ms, event) VALUES (?, ?, ?, ?)")
            var trainLoss: Double?, valLoss: Double?, bestVal: Double?, tps: Double?
            var through: Int64 = -1
            for e in batch.events {
                try insert.execute(arguments: [attemptID, e.seq, e.at_ms, jsonText(e.event)])
                through = max(through, e.seq)
                guard db.changesCount > 0 else { continue }
                switch e.event["event"]?.stringValue {
                case "step":
                    if let l = e.event["loss"]?.doubleValue { trainLoss = l }
                    if let t = e.event["tokens_per_s"]?.doubleValue { tps = t }
                case "eval":
                    if let l = e.event["loss"]?.doubleValue { valLoss = l; bestVal = min(bestVal ?? l, l) }
                default: break
                }
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
            return through
        }
    }

    /// The event log of a job: its latest attempt's by default, or one attempt's.
    public func events(job: JobID, attempt: Int?) throws -> [MetricRow] {
        try read { db in
            guard let latest = try Int.fetchOne(db, sql: "SELECT attempts FROM jobs WHERE id = ?", arguments: [job]) else {
                throw ErrorReply.notFound("no job \(job)")
            }
            let number = attempt ?? latest
            return try Row.fetchAll(db, sql: """
                SELECT a.number, m.seq, m.at_ms, m.event FROM metrics m JOIN attempts a ON a.id = m.attempt_id
                WHERE a.job_id = ? AND a.number = ? ORDER BY m.seq
                """, arguments: [job, number]).map {
                MetricRow(attempt: $0[0], seq: $0[1], at_ms: $0[2], event: (try? JSONValue.parse(Data(($0[3] as String).utf8))) ?? .null)
            }
        }
    }
}
