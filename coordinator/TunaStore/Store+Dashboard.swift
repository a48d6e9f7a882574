import Foundation
import GRDB
import GRDBSQLite
import TunaCore

/// Which loss a curve point is (the `points.kind` column).
public enum CurveKind: Int, Sendable, CaseIterable {
    case train = 0, eval = 1

    public var name: String { self == .train ? "train" : "eval" }
    public init?(name: String) { self.init(rawValue: name == "train" ? 0 : name == "eval" ? 1 : -1) }
}

/// One point of a job's loss curve: a `step` event's training loss or an `eval` event's
/// validation loss, at its step.
public struct CurvePoint: Sendable, Equatable {
    public var kind: CurveKind
    public var step: Int
    public var value: Double

    public init(kind: CurveKind, step: Int, value: Double) { self.kind = kind; self.step = step; self.value = value }

    /// The point an event line of `eventKind` (`TrainerEvent.kind(of:)`, read once by the caller)
    /// makes, if any (evals without a step, such as a command trainer's, and non-finite losses
    /// make none).
    public init?(_ eventKind: TrainerEvent.Kind?, event: JSONValue) {
        let kind: CurveKind
        switch eventKind {
        case .step: kind = .train
        case .eval: kind = .eval
        default: return nil
        }
        guard let step = event["step"]?.intValue, let loss = event["loss"]?.doubleValue, loss.isFinite else { return nil }
        self.init(kind: kind, step: step, value: loss)
    }
}

/// A sweep as the dashboard's sweeps page shows it: the counts, its best objective value and
/// the compute its attempts used.
public struct SweepOverview: Codable, Sendable {
    public var sweep: SweepRow
    public var best: Double?
    /// Wall-clock hours of all its attempts (running ones up to now), and those hours times
    /// each job's GPUs.
    public var worker_hours: Double
    public var gpu_hours: Double
    public var submitted_by: String?
}

/// What `/metrics` reads from the database at each scrape.
public struct StoreGauges: Sendable {
    public var jobsByStatus: [String: Int]
    public var queuedByTrainer: [String: Int]
    public var workersQuarantined: Int
    public var runningTokensPerSecond: [(job: JobID, sweep: SweepID, value: Double)]
}

extension Store {
    /// Keeps a batch's curve points (inside `ingest`'s transaction).
    func recordPoints(_ db: Database, job: JobID, _ points: [CurvePoint]) throws {
        guard !points.isEmpty else { return }
        let insert = try db.makeStatement(sql: "INSERT OR REPLACE INTO points (job_id, kind, step, value) VALUES (?, ?, ?, ?)")
        for p in points { try insert.execute(arguments: [job, p.kind.rawValue, p.step, p.value]) }
    }

    /// Every sweep (or one) with its best objective value and the hours its attempts used: one
    /// scan of the jobs and one of the attempts (for one sweep, only its own, by index), and the
    /// sweeps' counts (`sweeps()`, a row per sweep and state).
    public func sweepOverviews(now: Int64, only: SweepID? = nil) throws -> [SweepOverview] {
        let rows = try sweeps().filter { only == nil || $0.id == only }
        let filter = only.map { "WHERE j.sweep_id = \($0)" } ?? ""
        return try read { db in
            var best: [SweepID: Double] = [:], hours: [SweepID: (Double, Double)] = [:], by: [SweepID: String] = [:]
            for r in try Row.fetchAll(db, sql: """
                SELECT s.id, CASE WHEN s.objective_mode = 'max' THEN MAX(\(Store.objectiveValueSQL)) ELSE MIN(\(Store.objectiveValueSQL)) END,
                       s.submitted_by
                FROM sweeps s JOIN jobs j ON j.sweep_id = s.id \(filter) GROUP BY s.id
                """) {
                if let v: Double = r[1] { best[r[0]] = v }
                if let b: String = r[2] { by[r[0]] = b }
            }
            for r in try Row.fetchAll(db, sql: """
                SELECT j.sweep_id, SUM(COALESCE(a.ended_ms, ?) - a.started_ms), SUM((COALESCE(a.ended_ms, ?) - a.started_ms) * j.gpus)
                FROM attempts a JOIN jobs j ON j.id = a.job_id \(filter) GROUP BY j.sweep_id
                """, arguments: [now, now]) {
                hours[r[0]] = (Double(r[1] as Int64) / 3_600_000, Double(r[2] as Int64) / 3_600_000)
            }
            return rows.map { s in
                SweepOverview(sweep: s, best: best[s.id], worker_hours: hours[s.id]?.0 ?? 0, gpu_hours: hours[s.id]?.1 ?? 0, submitted_by: by[s.id])
            }
        }
    }

    /// The loss curves of a sweep's jobs as JSON, `{"kind", "jobs", "series": [{"job", "steps":
    /// [...], "values": [...]}]}` (`jobs`: the sweep's count): the `limit` jobs best by the sweep's
    /// objective (jobs with no value yet after those with one, then by id) that have points, or
    /// the named jobs of the sweep, each cut to at most `maxPoints` points (every k-th, and always
    /// the last), so a 10,000-job sweep's chart is a few hundred kilobytes read by one index range
    /// per job.
    public func curvesJSON(sweep: SweepID, kind: CurveKind, limit: Int, maxPoints: Int, jobs only: [JobID]? = nil) throws -> Data {
        try read { db in
            let (o, value) = try Store.objectiveColumn(db, sweep: sweep)
            let total = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM jobs WHERE sweep_id = ?", arguments: [sweep]) ?? 0
            let chosen: [JobID]
            if let only {
                // Only the sweep's own jobs (ids are checked, not trusted).
                let ids = Set(only)
                chosen = try JobID.fetchAll(db, sql: "SELECT id FROM jobs WHERE sweep_id = ? AND id IN (\(ids.map { String($0) }.joined(separator: ",")))",
                                            arguments: [sweep]).filter(ids.contains).sorted()
            } else {
                chosen = try JobID.fetchAll(db, sql: """
                    SELECT j.id FROM jobs j WHERE j.sweep_id = ? AND j.status != 'queued'
                    ORDER BY \(value) IS NULL, \(value)\(o.mode == .max ? " DESC" : ""), j.id LIMIT ?
                    """, arguments: [sweep, max(0, limit)])
            }
            let stmt = try db.makeStatement(sql: "SELECT step, value FROM points WHERE job_id = ? AND kind = ? ORDER BY step")
            var w = JSONBytes(capacity: 64 + chosen.count * min(maxPoints, 256) * 24)
            w.raw("{\"kind\":\""); w.bytes += kind.name.utf8
            w.raw("\",\"jobs\":"); w.bytes += String(total).utf8
            w.raw(",\"series\":[")
            var steps: [Int64] = [], values: [Double] = []
            var first = true
            for job in chosen {
                steps.removeAll(keepingCapacity: true); values.removeAll(keepingCapacity: true)
                try stmt.setArguments([job, kind.rawValue])
                let q = stmt.sqliteStatement
                defer { sqlite3_reset(q) }
                while true {
                    let rc = sqlite3_step(q)
                    if rc == SQLITE_DONE { break }
                    guard rc == SQLITE_ROW else { throw StoreError.database("curve query failed (\(rc))") }
                    steps.append(sqlite3_column_int64(q, 0)); values.append(sqlite3_column_double(q, 1))
                }
                if steps.isEmpty && only == nil { continue }
                let keep = Self.downsample(count: steps.count, to: maxPoints)
                if !first { w.raw(",") }
                first = false
                w.raw("{\"job\":"); w.bytes += String(job).utf8
                w.raw(",\"steps\":[")
                for (n, i) in keep.enumerated() { if n > 0 { w.raw(",") }; w.bytes += String(steps[i]).utf8 }
                w.raw("],\"values\":[")
                for (n, i) in keep.enumerated() { if n > 0 { w.raw(",") }; w.bytes += Store.shortNumber(values[i]).utf8 }
                w.raw("]}")
            }
            w.raw("]}")
            return Data(w.bytes)
        }
    }

    /// A curve value as JSON: float32's shortest digits (a chart needs no more, and they halve the
    /// reply), or the double's where float32 cannot hold it (beyond 3.4e38 it would be `inf`).
    public static func shortNumber(_ v: Double) -> String {
        let f = Float(v)
        return f.isFinite ? "\(f)" : "\(v)"
    }

    /// Which of `count` points to keep to show at most `limit`: every k-th from the first, and the
    /// last (the value a reader looks for at the end of a curve).
    public static func downsample(count: Int, to limit: Int) -> [Int] {
        guard count > limit, limit >= 2 else { return Array(0..<count) }
        let stride = (count - 1 + (limit - 2)) / (limit - 1)
        var keep = Array(Swift.stride(from: 0, to: count - 1, by: stride))
        keep.append(count - 1)
        return keep
    }

    /// A sweep's jobs by status (what its page's stream watches for changes).
    public func sweepCounts(_ sweep: SweepID) throws -> [String: Int] {
        try read { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM sweeps WHERE id = ?", arguments: [sweep]) != nil else { throw StoreError.notFound("no sweep \(sweep)") }
            var out: [String: Int] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT status, jobs FROM sweep_counts WHERE sweep_id = ? AND jobs > 0", arguments: [sweep]) { out[r[0]] = r[1] }
            return out
        }
    }

    /// The jobs each worker runs now, by worker id.
    public func runningJobs() throws -> [String: [JobID]] {
        try read { db in
            var out: [String: [JobID]] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT worker_id, job_id FROM attempts WHERE state = 'running' ORDER BY job_id") {
                out[r[0], default: []].append(r[1])
            }
            return out
        }
    }

    /// The last `count` events of a job's latest attempt (the job page's log tail), oldest first.
    public func lastEvents(job: JobID, count: Int) throws -> [EventRow] {
        try read { db in
            try Row.fetchAll(db, sql: """
                SELECT a.number, m.seq, m.at_ms, m.event FROM events m JOIN attempts a ON a.id = m.attempt_id
                WHERE a.job_id = ? AND a.number = (SELECT attempts FROM jobs WHERE id = ?) ORDER BY m.seq DESC LIMIT ?
                """, arguments: [job, job, count]).reversed().map {
                EventRow(attempt: $0[0], seq: $0[1], at_ms: $0[2], event: (try? JSONValue.parse(Data(($0[3] as String).utf8))) ?? .null)
            }
        }
    }

    /// What `/metrics` reports from the database, read at scrape time.
    public func gauges() throws -> StoreGauges {
        try read { db in
            var byStatus: [String: Int] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT status, SUM(jobs) FROM sweep_counts GROUP BY status") { byStatus[r[0]] = r[1] }
            var byTrainer: [String: Int] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT trainer, COUNT(*) FROM jobs WHERE status = 'queued' GROUP BY trainer") { byTrainer[r[0]] = r[1] }
            let quarantined = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM workers WHERE quarantined") ?? 0
            let tps = try Row.fetchAll(db, sql: "SELECT id, sweep_id, tokens_per_s FROM jobs WHERE status = 'running' AND tokens_per_s IS NOT NULL ORDER BY id")
                .map { (job: $0[0] as JobID, sweep: $0[1] as SweepID, value: $0[2] as Double) }
            return StoreGauges(jobsByStatus: byStatus, queuedByTrainer: byTrainer, workersQuarantined: quarantined, runningTokensPerSecond: tps)
        }
    }
}
