import Foundation
import GRDB
import TunaCore

/// Retention (`tuna gc`): which artifact records and uploads are still needed. An artifact is
/// kept when it is
///   (a) a result: an artifact of a succeeded attempt that is not a checkpoint (and, with
///       `keepSucceededCheckpoints`, its checkpoints too);
///   (b) what the job would resume from: for a job that has not succeeded, the checkpoints of its
///       newest attempt that left any (`latestCheckpoint`, the lease's `resume`);
///   (c) work in progress: anything of an attempt still running.
/// Everything else goes: the artifacts of lost, failed, cancelled and returned attempts, older
/// (superseded) checkpoints, and succeeded jobs' checkpoints. An upload is kept while its attempt
/// runs; the uploads of ended attempts were abandoned.
extension Store {
    public struct Retention: Sendable, Equatable {
        public var artifactRecords: Int
        public var abandonedUploads: [Int64]
    }

    static func unneededArtifacts(keepSucceededCheckpoints: Bool) -> String {
        """
        SELECT ar.id FROM artifacts ar JOIN attempts a ON a.id = ar.attempt_id JOIN jobs j ON j.id = a.job_id
        WHERE a.state != 'running'
          AND NOT (a.state = 'succeeded' AND (ar.kind != 'checkpoint' OR \(keepSucceededCheckpoints ? 1 : 0)))
          AND NOT (j.status != 'succeeded' AND ar.kind = 'checkpoint' AND a.id = (
                SELECT a2.id FROM attempts a2 JOIN artifacts c ON c.attempt_id = a2.id
                WHERE a2.job_id = j.id AND c.kind = 'checkpoint' ORDER BY a2.number DESC LIMIT 1))
        """
    }

    static let abandonedUploads = "SELECT u.id FROM uploads u JOIN attempts a ON a.id = u.attempt_id WHERE a.state != 'running'"

    /// Deletes (or, with `dryRun`, only counts) the artifact records and uploads no longer needed.
    /// The files they named are the caller's to remove, once nothing names them (`isReferenced`).
    public func collectRecords(dryRun: Bool, keepSucceededCheckpoints: Bool) async throws -> Retention {
        try await write { db in
            let ids = try Int64.fetchAll(db, sql: Self.unneededArtifacts(keepSucceededCheckpoints: keepSucceededCheckpoints))
            let uploads = try Int64.fetchAll(db, sql: Self.abandonedUploads)
            if !dryRun {
                try db.execute(sql: "DELETE FROM artifacts WHERE id IN (\(Self.unneededArtifacts(keepSucceededCheckpoints: keepSucceededCheckpoints)))")
                try db.execute(sql: "DELETE FROM uploads WHERE id IN (\(Self.abandonedUploads))")
            }
            return Retention(artifactRecords: ids.count, abandonedUploads: uploads)
        }
    }

    /// Whether an artifact record or an upload names this content (after a dry run's deletions
    /// when `ignoring` lists them). Checked right before a file is removed.
    public func isReferenced(sha256: String) throws -> Bool {
        try read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM artifacts WHERE sha256 = ?) OR EXISTS (SELECT 1 FROM uploads WHERE sha256 = ?)",
                              arguments: [sha256, sha256]) ?? false
        }
    }

    /// The contents a dry run would keep: those named by records and uploads that would stay.
    public func referencedAfterCollection(keepSucceededCheckpoints: Bool) throws -> Set<String> {
        try read { db in
            Set(try String.fetchAll(db, sql: """
                SELECT sha256 FROM artifacts WHERE id NOT IN (\(Self.unneededArtifacts(keepSucceededCheckpoints: keepSucceededCheckpoints)))
                UNION SELECT sha256 FROM uploads WHERE id NOT IN (\(Self.abandonedUploads))
                """))
        }
    }

    /// Every upload id with a row (their part files are live).
    public func uploadIDs() throws -> Set<Int64> {
        try read { db in Set(try Int64.fetchAll(db, sql: "SELECT id FROM uploads")) }
    }

    /// The quota check at `upload_begin`: the artifact alone, and the attempt's artifacts and
    /// other uploads with it, must fit. A violation is the job's (its trainer wrote too much).
    func checkQuota(_ db: Database, attemptID: Int64, _ a: ArtifactInfo, limits: ArtifactQuota) throws {
        if a.size > limits.maxArtifactBytes {
            throw StoreError.quota("\(a.name) is \(a.size) bytes, over the coordinator's limit of \(limits.maxArtifactBytes) per artifact (--max-artifact-gb)")
        }
        let others = try Int64.fetchOne(db, sql: """
            SELECT COALESCE((SELECT SUM(size) FROM artifacts WHERE attempt_id = ? AND NOT (kind = ? AND name = ?)), 0)
                 + COALESCE((SELECT SUM(size) FROM uploads WHERE attempt_id = ? AND NOT (kind = ? AND name = ?)), 0)
            """, arguments: [attemptID, a.kind, a.name, attemptID, a.kind, a.name]) ?? 0
        if others + a.size > limits.maxAttemptBytes {
            throw StoreError.quota("\(a.name) would bring this attempt's artifacts to \(others + a.size) bytes, over the coordinator's limit of \(limits.maxAttemptBytes) per attempt (--max-attempt-gb)")
        }
    }
}

/// How much one artifact, and one attempt's artifacts together, may weigh.
public struct ArtifactQuota: Sendable {
    public var maxArtifactBytes: Int64 = 64 << 30
    public var maxAttemptBytes: Int64 = 256 << 30
    public init() {}
}
