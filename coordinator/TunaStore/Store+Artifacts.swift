import Foundation
import GRDB
import TunaCore

/// Upload bookkeeping. The bytes live in files the coordinator's artifact store manages; the
/// database records how far each upload got (so a dropped connection resumes from there)
/// and, once verified, which attempt produced which file.
extension Store {
    public struct UploadState: Sendable {
        public var id: Int64
        public var attemptID: Int64
        public var artifact: ArtifactInfo
        public var received: Int64
    }

    /// Starts (or resumes) an upload for a live attempt.
    public func beginUpload(_ ref: AttemptRef, worker: String, artifact a: ArtifactInfo, quota: ArtifactQuota = ArtifactQuota()) async throws -> UploadState {
        try await write { db in
            let attemptID = try self.currentAttemptID(db, ref, worker: worker)
            try self.checkQuota(db, attemptID: attemptID, a, limits: quota)
            try db.execute(sql: """
                INSERT INTO uploads (attempt_id, kind, name, sha256, size) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (attempt_id, kind, name, sha256) DO NOTHING
                """, arguments: [attemptID, a.kind, a.name, a.sha256, a.size])
            let row = try Row.fetchOne(db, sql: "SELECT id, received FROM uploads WHERE attempt_id = ? AND kind = ? AND name = ? AND sha256 = ?",
                                       arguments: [attemptID, a.kind, a.name, a.sha256])
            guard let row else { throw StoreError.database("upload row vanished") }
            return UploadState(id: row[0], attemptID: attemptID, artifact: a, received: row[1])
        }
    }

    public func upload(_ id: Int64) throws -> UploadState {
        try read { db in
            guard let r = try Row.fetchOne(db, sql: "SELECT id, attempt_id, kind, name, sha256, size, received FROM uploads WHERE id = ?", arguments: [id]) else {
                throw StoreError.notFound("no upload \(id)")
            }
            return UploadState(id: r[0], attemptID: r[1], artifact: ArtifactInfo(kind: r[2], name: r[3], sha256: r[4], size: r[5]), received: r[6])
        }
    }

    public func setUploadReceived(_ id: Int64, _ received: Int64) async throws {
        try await write { db in try db.execute(sql: "UPDATE uploads SET received = ? WHERE id = ?", arguments: [received, id]) }
    }

    /// Records a verified artifact for its attempt (if that attempt is still live) and drops
    /// the upload row.
    public func completeUpload(_ id: Int64, ref: AttemptRef, worker: String, now: Int64) async throws {
        try await write { db in
            guard let r = try Row.fetchOne(db, sql: "SELECT attempt_id, kind, name, sha256, size FROM uploads WHERE id = ?", arguments: [id]) else {
                throw StoreError.notFound("no upload \(id)")
            }
            let attemptID = try self.currentAttemptID(db, ref, worker: worker)
            guard attemptID == r[0] as Int64 else { throw StoreError.staleAttempt(ref, "upload \(id) belongs to another attempt") }
            try db.execute(sql: """
                INSERT INTO artifacts (attempt_id, kind, name, sha256, size, created_ms) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (attempt_id, kind, name) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size
                """, arguments: [attemptID, r[1], r[2], r[3], r[4], now])
            try db.execute(sql: "DELETE FROM uploads WHERE id = ?", arguments: [id])
        }
    }

    /// Throws `stale_attempt` unless `ref` is live and held by `worker`.
    public func checkLive(_ ref: AttemptRef, worker: String) throws {
        _ = try read { db in try self.currentAttemptID(db, ref, worker: worker) }
    }

    /// The attempt an upload belongs to, as a reference.
    public func uploadAttempt(_ id: Int64) throws -> AttemptRef {
        try read { db in
            guard let r = try Row.fetchOne(db, sql: "SELECT a.job_id, a.number FROM uploads u JOIN attempts a ON a.id = u.attempt_id WHERE u.id = ?", arguments: [id]) else {
                throw StoreError.notFound("no upload \(id)")
            }
            return AttemptRef(job: r[0], attempt: r[1])
        }
    }

    /// Artifacts of a job's result attempt (or, if it has none yet, its latest attempt).
    public func artifacts(job: JobID) throws -> [ArtifactInfo] {
        try read { db in try artifacts(db, job: job) }
    }

    func artifacts(_ db: Database, job: JobID) throws -> [ArtifactInfo] {
        try Row.fetchAll(db, sql: """
            SELECT ar.kind, ar.name, ar.sha256, ar.size FROM artifacts ar JOIN attempts a ON a.id = ar.attempt_id
            WHERE a.job_id = ? AND a.number = (SELECT MAX(a2.number) FROM attempts a2 JOIN artifacts x ON x.attempt_id = a2.id
                                               WHERE a2.job_id = ? AND (a2.state = 'succeeded' OR NOT EXISTS
                                                   (SELECT 1 FROM attempts s WHERE s.job_id = ? AND s.state = 'succeeded')))
            ORDER BY ar.kind, ar.name
            """, arguments: [job, job, job]).map { ArtifactInfo(kind: $0[0], name: $0[1], sha256: $0[2], size: $0[3]) }
    }

    /// Whether any artifact with this digest is recorded (downloads serve only known files).
    public func hasArtifact(sha256: String) throws -> Bool {
        try read { db in try Bool.fetchOne(db, sql: "SELECT 1 FROM artifacts WHERE sha256 = ? LIMIT 1", arguments: [sha256]) ?? false }
    }
}
