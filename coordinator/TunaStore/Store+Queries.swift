import Foundation
import GRDB
import GRDBSQLite
import TunaCore

extension Store {
    public static let sortableColumns = ["id", "objective", "final_train_loss", "best_val_loss", "final_val_loss", "tokens_per_s", "attempts", "status"]

    /// A sweep's stored objective (NULL columns: stored before objectives, the default).
    static func objective(metric: String?, mode: String?) -> Objective {
        guard let metric, let mode = mode.flatMap(Objective.Mode.init(rawValue:)) else { return .default }
        return Objective(metric: metric, mode: mode)
    }

    /// SQL for a job's objective value (`j` the job, `s` its sweep): the final validation loss,
    /// or the named field of its eval metrics (names are checked by Objective.isMetricName, so
    /// the JSON path is safe to build).
    static let objectiveValueSQL = """
        CASE WHEN COALESCE(s.objective_metric, 'val_loss') = 'val_loss' THEN j.final_val_loss
             ELSE json_extract(j.metrics, '$.' || s.objective_metric) END
        """

    /// One sweep's objective and the SQL of a job's value of it (`j` the job) without a join on
    /// `sweeps`: a plain column, or one JSON field (names checked by Objective.isMetricName).
    static func objectiveColumn(_ db: Database, sweep: SweepID) throws -> (Objective, String) {
        guard let row = try Row.fetchOne(db, sql: "SELECT objective_metric, objective_mode FROM sweeps WHERE id = ?", arguments: [sweep]) else {
            throw StoreError.notFound("no sweep \(sweep)")
        }
        let o = Store.objective(metric: row[0], mode: row[1])
        return (o, o.metric == "val_loss" || !Objective.isMetricName(o.metric) ? "j.final_val_loss" : "json_extract(j.metrics, '$.\(o.metric)')")
    }

    public func sweeps() throws -> [SweepRow] {
        try read { db in
            try Row.fetchAll(db, sql: """
                SELECT s.id, s.name, s.created_ms, s.varying, COALESCE(SUM(c.jobs), 0),
                       SUM(c.jobs * (c.status = 'queued')), SUM(c.jobs * (c.status = 'running')), SUM(c.jobs * (c.status = 'succeeded')),
                       SUM(c.jobs * (c.status = 'failed')), SUM(c.jobs * (c.status = 'cancelled')), s.objective_metric, s.objective_mode,
                       SUM(c.jobs * (c.status = 'stopped')), SUM(c.jobs * (c.status = 'paused'))
                FROM sweeps s LEFT JOIN sweep_counts c ON c.sweep_id = s.id GROUP BY s.id ORDER BY s.id
                """).map { r in
                let varying = (try? JSONDecoder().decode([String].self, from: Data((r[3] as String).utf8))) ?? []
                return SweepRow(id: r[0], name: r[1], created_ms: r[2], varying: varying, jobs: r[4],
                                queued: r[5] ?? 0, running: r[6] ?? 0, succeeded: r[7] ?? 0, failed: r[8] ?? 0, cancelled: r[9] ?? 0,
                                stopped: r[12] ?? 0, objective: Self.objective(metric: r[10], mode: r[11]), paused: r[13] ?? 0)
            }
        }
    }

    /// One row per job: status, swept parameters and the summary metrics. The summary columns
    /// are kept up to date as events arrive, so this is one indexed scan even for 100,000 jobs.
    public func results(sweep: SweepID?, sort: String?) throws -> [ResultRow] {
        let json = try resultsJSON(sweep: sweep, sort: sort).json
        do { return try JSONDecoder().decode([ResultRow].self, from: json) } catch {
            throw StoreError.database("result rows did not decode: \(error)")
        }
    }

    /// The same rows as `results`, written straight to JSON (an array of objects with sorted
    /// keys, nulls explicit): the stored `varying` JSON is spliced in as it is, so 100,000
    /// rows cost one scan and one pass of string building, no Codable round trip.
    public func resultsJSON(sweep: SweepID?, sort: String?) throws -> (count: Int, json: Data) {
        let column = sort ?? "id"
        guard Store.sortableColumns.contains(column) else {
            throw StoreError.badRequest("cannot sort by \(column); one of \(Store.sortableColumns.joined(separator: ", "))")
        }
        let order: String
        switch column {
        // In job order, rows stream from an index with no sort: within a sweep jobs were
        // stored in index order, so (sweep_id, idx) gives id order; across sweeps, the rowid.
        case "id": order = sweep == nil ? "j.id" : "j.idx"
        case "tokens_per_s": order = "j.tokens_per_s IS NULL, j.tokens_per_s DESC, j.id"
        // Best first by each sweep's own mode; jobs with no value yet last.
        // (Across sweeps, sweep by sweep: one sweep's values mean nothing against another's.)
        case "objective": order = "j.sweep_id, objective IS NULL, CASE WHEN s.objective_mode = 'max' THEN -objective ELSE objective END, j.id"
        default: order = "j.\(column) IS NULL, j.\(column), j.id"
        }
        return try read { db in
            // One sweep's objective is known before the scan: its value is a plain column (or
            // one JSON field) per row, with no join (the join cost a third of a 100,000-row reply).
            var objectiveValue = Store.objectiveValueSQL, join = "JOIN sweeps s ON s.id = j.sweep_id", orderBy = order
            if let sweep {
                let o: Objective
                (o, objectiveValue) = try Store.objectiveColumn(db, sweep: sweep)
                join = ""
                if column == "objective" { orderBy = "objective IS NULL, objective\(o.mode == .max ? " DESC" : ""), j.id" }
            }
            let filter = sweep == nil ? "" : "WHERE j.sweep_id = ?"
            let stmt = try db.makeStatement(sql: """
                SELECT j.adapter_sha256, j.attempts, j.best_val_loss, j.error, j.final_train_loss, j.final_val_loss, j.id, j.idx,
                       j.varying, j.status, j.sweep_id, j.tokens_per_s, w.name, j.metrics, \(objectiveValue) AS objective
                FROM jobs j \(join) LEFT JOIN workers w ON w.id = j.worker \(filter) ORDER BY \(orderBy)
                """)
            try stmt.setArguments(sweep.map { [$0] } ?? [])
            // Stepped through SQLite's C API: per-row overhead is what decides the time here.
            // Sized once from the kept counts (about 300 bytes a row): growing a 30 MB reply
            // by doubling copied it three times and faulted in every new page.
            let expected = try Int.fetchOne(db, sql: "SELECT SUM(jobs) FROM sweep_counts WHERE ? IS NULL OR sweep_id = ?",
                                            arguments: [sweep, sweep]) ?? 0
            var w = JSONBytes(capacity: 320 * expected + 64)
            var count = 0
            let q = stmt.sqliteStatement
            defer { sqlite3_reset(q) }
            w.raw("[")
            while true {
                let rc = sqlite3_step(q)
                if rc == SQLITE_DONE { break }
                guard rc == SQLITE_ROW else { throw StoreError.database("results query failed (\(rc))") }
                if count > 0 { w.raw(",") }
                count += 1
                w.raw("{\"adapter_sha256\":"); w.text(q, 0)
                w.raw(",\"attempts\":"); w.integer(q, 1)
                w.raw(",\"best_val_loss\":"); w.real(q, 2)
                w.raw(",\"error\":"); w.text(q, 3)
                w.raw(",\"final_train_loss\":"); w.real(q, 4)
                w.raw(",\"final_val_loss\":"); w.real(q, 5)
                w.raw(",\"id\":"); w.integer(q, 6)
                w.raw(",\"index\":"); w.integer(q, 7)
                w.raw(",\"metrics\":"); w.verbatim(q, 13)
                w.raw(",\"objective\":"); w.real(q, 14)
                w.raw(",\"params\":"); w.verbatim(q, 8)
                w.raw(",\"status\":"); w.text(q, 9)
                w.raw(",\"sweep\":"); w.integer(q, 10)
                w.raw(",\"tokens_per_s\":"); w.real(q, 11)
                w.raw(",\"worker\":"); w.text(q, 12)
                w.raw("}")
            }
            w.raw("]")
            return (count, Data(w.bytes))
        }
    }

    public func jobDetail(_ job: JobID) throws -> JobDetail {
        try read { db in
            guard let r = try Row.fetchOne(db, sql: """
                SELECT j.id, j.sweep_id, j.idx, j.status, j.attempts, j.varying, j.final_train_loss, j.best_val_loss,
                       j.final_val_loss, j.tokens_per_s, w.name, j.adapter_sha256, j.error, j.metrics, \(Store.objectiveValueSQL)
                FROM jobs j JOIN sweeps s ON s.id = j.sweep_id LEFT JOIN workers w ON w.id = j.worker WHERE j.id = ?
                """, arguments: [job]) else { throw StoreError.notFound("no job \(job)") }
            let row = ResultRow(id: r[0], sweep: r[1], index: r[2], status: JobStatus(rawValue: r[3]) ?? .queued, attempts: r[4],
                                params: (try? JSONValue.parse(Data((r[5] as String).utf8)))?.objectValue ?? [:],
                                final_train_loss: r[6], best_val_loss: r[7], final_val_loss: r[8], tokens_per_s: r[9],
                                worker: r[10], adapter_sha256: r[11], error: r[12],
                                metrics: (r[13] as String?).flatMap { try? JSONDecoder().decode([String: Double].self, from: Data($0.utf8)) },
                                objective: r[14])
            let attempts = try Row.fetchAll(db, sql: """
                SELECT a.job_id, a.number, COALESCE(w.name, a.worker_id), a.state, a.started_ms, a.ended_ms, a.error
                FROM attempts a LEFT JOIN workers w ON w.id = a.worker_id WHERE a.job_id = ? ORDER BY a.number
                """, arguments: [job]).map {
                AttemptRow(job: $0[0], attempt: $0[1], worker: $0[2], state: $0[3], started_ms: $0[4], ended_ms: $0[5], error: $0[6])
            }
            return JobDetail(job: row, attempts: attempts, artifacts: try artifacts(db, job: job), decisions: try decisions(db, job: job))
        }
    }

    /// Workers with what they run; `connected` is supplied by the coordinator (it owns sockets).
    public func workers(connected: Set<String>) throws -> [WorkerRow] {
        try read { db in
            try Row.fetchAll(db, sql: """
                SELECT w.id, w.name, w.capabilities, w.last_seen_ms, w.consecutive_failures, w.quarantined, w.quarantine_reason,
                       (SELECT COUNT(*) FROM attempts a WHERE a.worker_id = w.id AND a.state = 'running')
                FROM workers w ORDER BY w.name, w.id
                """).map { r in
                let caps = (try? JSONDecoder().decode(Capabilities.self, from: Data((r[2] as String).utf8)))
                    ?? Capabilities(hostname: "?", trainers: [], gpus: [], cpu_cores: 0, ram_gb: 0)
                return WorkerRow(id: r[0], name: r[1], capabilities: caps, connected: connected.contains(r[0]),
                                 last_seen_ms: r[3], running: r[7], consecutive_failures: r[4], quarantined: r[5], quarantine_reason: r[6])
            }
        }
    }

    /// Queued jobs (of one sweep, or all) with what they need of a worker, for `waiting`.
    public func queuedNeeds(sweep: SweepID?) throws -> [(job: JobID, sweep: SweepID, need: WaitReason.Need, notBeforeMs: Int64)] {
        try read { db in
            try Row.fetchAll(db, sql: """
                SELECT id, sweep_id, trainer, gpus, gpu_memory_gb, not_before_ms FROM jobs
                WHERE status = 'queued' AND (? IS NULL OR sweep_id = ?) ORDER BY id
                """, arguments: [sweep, sweep]).map { r in
                (r[0], r[1], WaitReason.Need(trainer: r[2], gpus: r[3], gpuMemoryGB: r[4]), r[5])
            }
        }
    }

    /// Queued jobs grouped by what they need of a worker and whether their backoff has ended
    /// at `now`: the first job and the count of each group (one scan, no row per job).
    public func queuedNeedGroups(sweep: SweepID?, now: Int64) throws -> [(first: JobID, sweep: SweepID, need: WaitReason.Need, backingOff: Bool, jobs: Int)] {
        try read { db in
            try Row.fetchAll(db, sql: """
                SELECT MIN(id), sweep_id, trainer, gpus, gpu_memory_gb, not_before_ms > ?, COUNT(*) FROM jobs
                WHERE status = 'queued' AND (? IS NULL OR sweep_id = ?)
                GROUP BY sweep_id, trainer, gpus, gpu_memory_gb, not_before_ms > ? ORDER BY MIN(id)
                """, arguments: [now, sweep, sweep, now]).map { r in
                (r[0], r[1], WaitReason.Need(trainer: r[2], gpus: r[3], gpuMemoryGB: r[4]), r[5], r[6])
            }
        }
    }

    /// Counts by status, from the jobs themselves (not `sweep_counts`): for tests and the benchmark.
    public func statusCounts() throws -> [JobStatus: Int] {
        try read { db in
            var out: [JobStatus: Int] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT status, COUNT(*) FROM jobs GROUP BY status") {
                if let s = JobStatus(rawValue: r[0]) { out[s] = r[1] }
            }
            return out
        }
    }
}

/// JSON written byte by byte from SQLite columns.
struct JSONBytes {
    var bytes: [UInt8] = []
    init(capacity: Int) { bytes.reserveCapacity(capacity) }

    mutating func raw(_ s: StaticString) {
        s.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    mutating func integer(_ q: OpaquePointer, _ i: Int32) {
        // Digits written in place: a String per number was a tenth of a 100,000-row reply.
        var v = sqlite3_column_int64(q, i)
        if v < 0 { bytes.append(UInt8(ascii: "-")); if v == .min { bytes += "9223372036854775808".utf8; return }; v = -v }
        let start = bytes.count
        repeat { bytes.append(UInt8(ascii: "0") + UInt8(v % 10)); v /= 10 } while v > 0
        bytes[start...].reverse()
    }

    mutating func real(_ q: OpaquePointer, _ i: Int32) {
        let d = sqlite3_column_double(q, i)
        if sqlite3_column_type(q, i) == SQLITE_NULL || !d.isFinite { raw("null") } else { bytes.append(contentsOf: "\(d)".utf8) }
    }

    /// A column that already holds JSON (the stored `varying` object).
    mutating func verbatim(_ q: OpaquePointer, _ i: Int32) {
        guard let p = sqlite3_column_text(q, i) else { raw("null"); return }
        bytes.append(contentsOf: UnsafeBufferPointer(start: p, count: Int(sqlite3_column_bytes(q, i))))
    }

    mutating func text(_ q: OpaquePointer, _ i: Int32) {
        guard sqlite3_column_type(q, i) != SQLITE_NULL, let p = sqlite3_column_text(q, i) else { raw("null"); return }
        bytes.append(UInt8(ascii: "\""))
        for c in UnsafeBufferPointer(start: p, count: Int(sqlite3_column_bytes(q, i))) {
            switch c {
            case UInt8(ascii: "\""): raw("\\\"")
            case UInt8(ascii: "\\"): raw("\\\\")
            case 0..<0x20: bytes.append(contentsOf: String(format: "\\u%04x", c).utf8)
            default: bytes.append(c)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
