import Crypto
import Foundation
import TunaCore
import TunaStore

/// `tuna backup` and `tuna restore`. A backup is itself a data directory (`tuna.sqlite` and
/// `artifacts/`), taken while the coordinator runs: first a snapshot of the database through
/// SQLite's online backup API, then every artifact that snapshot names, each checked against its
/// SHA-256 as it is copied. Artifacts are immutable and content-addressed, and a record is
/// written only after its file is in place, so the two are consistent: every artifact the copied
/// database names is in the copy. (Only `tuna gc` removes files; one that removes a file the
/// snapshot names while the copy runs makes the backup stop, naming it: run it again.) Backing
/// up into the same folder again copies only new artifacts.
public enum Backup {
    public struct Summary: Sendable {
        public var artifacts: Int
        public var copied: Int
        public var bytesCopied: Int64
    }

    static let database = "tuna.sqlite"

    /// Backs up the data directory `dataDir` into `out` (created if needed).
    public static func take(dataDir: URL, out: URL) throws -> Summary {
        try copy(from: dataDir, to: out, what: "not a coordinator's data directory")
    }

    /// Restores the backup `from` into `dataDir`, which must not hold a database yet, checking the
    /// database's integrity and every artifact's SHA-256 on the way. Start a coordinator on
    /// `dataDir` afterwards.
    public static func restore(from backup: URL, dataDir: URL) throws -> Summary {
        guard !FileManager.default.fileExists(atPath: dataDir.appendingPathComponent(database).path) else {
            throw TunaError.invalid("\(dataDir.path) already holds a \(database): restore into an empty data directory")
        }
        return try copy(from: backup, to: dataDir, what: "not a tuna backup")
    }

    /// A snapshot of `source`'s database, then the artifacts it names; the snapshot is renamed
    /// into place last, so that an interrupted copy leaves the destination's previous database
    /// (or none) whole.
    static func copy(from source: URL, to dest: URL, what: String) throws -> Summary {
        let db = source.appendingPathComponent(database)
        guard FileManager.default.fileExists(atPath: db.path) else { throw TunaError.invalid("\(source.path) holds no \(database): \(what)") }
        try FileManager.default.createDirectory(at: dest, withIntermediateDirectories: true)
        let partial = dest.appendingPathComponent(database + ".partial")
        let named = try Store.snapshot(source: db.path, destination: partial.path)
        let summary = try copyArtifacts(named, from: try ArtifactStore(dataDir: source), to: try ArtifactStore(dataDir: dest))
        guard rename(partial.path, dest.appendingPathComponent(database).path) == 0 else {
            throw TunaError.io("cannot move the snapshot into \(dest.path): \(String(cString: strerror(errno)))")
        }
        return summary
    }

    /// Copies each named artifact that `to` lacks (or holds with another size), via a temporary
    /// file whose SHA-256 must match before it is renamed into place.
    static func copyArtifacts(_ named: [(sha256: String, size: Int64)], from: ArtifactStore, to: ArtifactStore) throws -> Summary {
        var summary = Summary(artifacts: named.count, copied: 0, bytesCopied: 0)
        for (sha, size) in named {
            let dest = to.path(sha256: sha)
            if let have = try? FileManager.default.attributesOfItem(atPath: dest.path)[.size] as? NSNumber, have.int64Value == size { continue }
            let src = from.path(sha256: sha)
            guard FileManager.default.fileExists(atPath: src.path) else {
                throw TunaError.io("artifact \(sha) is named by the database but missing from \(from.root.path)")
            }
            try FileManager.default.createDirectory(at: dest.deletingLastPathComponent(), withIntermediateDirectories: true)
            let tmp = dest.appendingPathExtension("partial")
            try? FileManager.default.removeItem(at: tmp)
            try FileManager.default.copyItem(at: src, to: tmp)
            let digest = try ArtifactStore.sha256(of: tmp)
            guard digest == sha else {
                try? FileManager.default.removeItem(at: tmp)
                throw TunaError.io("artifact \(sha) in \(from.root.path) is corrupt (its content hashes to \(digest))")
            }
            try? FileManager.default.removeItem(at: dest)
            try FileManager.default.moveItem(at: tmp, to: dest)
            summary.copied += 1
            summary.bytesCopied += size
        }
        return summary
    }
}
