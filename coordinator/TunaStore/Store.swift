import Foundation
import GRDB
import TunaCore

/// Everything the coordinator keeps, in one SQLite file (WAL). The only type that speaks
/// SQL. Every method is one transaction, so each invariant (one current attempt per job,
/// at most one result) is enforced inside a single write.
///
/// Durability: WAL with `synchronous=FULL` by default: a reply is sent only after its
/// transaction is on disk, so a coordinator killed with -9 (or a power cut) loses nothing it
/// acknowledged. `synchronous=NORMAL` survives kill -9 too (the WAL is in the OS cache) but
/// not a power cut; `--sync normal` trades that for speed.
public final class Store: @unchecked Sendable {
    // @unchecked: DatabaseQueue serializes every access itself.
    let db: DatabaseQueue
    let committer: GroupCommitter
    /// Sweeps whose jobs this process is storing now (`insertSweep`, `resumeExpansion`): a
    /// resume skips them, so no job is stored twice.
    let storing = SweepSet()
    /// TPE sweeps' search spaces (Store+TPE.swift).
    let searchSpaces = SearchSpaces()

    public enum Sync: String, Sendable { case full = "FULL", normal = "NORMAL" }

    /// Opens (creating if needed) the database at `path`; nil for a private in-memory one.
    public init(path: String?, sync: Sync = .full) throws {
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA foreign_keys = ON")
            try db.execute(sql: "PRAGMA busy_timeout = 5000")
            // 64 MiB of page cache (SQLite's default is 2 MiB): storing a 1,000,000-job sweep
            // inserts into indexes of a few hundred MB, and re-reading their pages from the OS
            // for every chunk was a third of the time.
            try db.execute(sql: "PRAGMA cache_size = -65536")
        }
        do {
            if let path {
                db = try DatabaseQueue(path: path, configuration: config)
                try db.writeWithoutTransaction { db in
                    try db.execute(sql: "PRAGMA journal_mode = WAL")
                    try db.execute(sql: "PRAGMA synchronous = \(sync.rawValue)")
                }
            } else {
                db = try DatabaseQueue(configuration: config)
            }
            try Schema.migrator.migrate(db)
            committer = GroupCommitter(db: db)
        } catch {
            throw TunaError.io("cannot open the database at \(path ?? ":memory:"): \(error)")
        }
    }

    /// Runs a change in the next group commit (see `GroupCommitter`) and returns once it is durable.
    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await committer.write(body)
    }

    func read<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try db.read(body) }
        catch let e as StoreError { throw e }
        catch { throw StoreError.database("database read failed: \(error)") }
    }
}


/// A set of sweep ids shared between tasks.
final class SweepSet: @unchecked Sendable {
    // @unchecked: `ids` is guarded by `lock`.
    private var ids = Set<SweepID>()
    private let lock = NSLock()
    /// Adds `id`; false if it was there.
    func insert(_ id: SweepID) -> Bool { lock.withLock { ids.insert(id).inserted } }
    func remove(_ id: SweepID) { _ = lock.withLock { ids.remove(id) } }
}

/// The sweep a submit claimed inside its write transaction, read after it.
final class ClaimedSweep: @unchecked Sendable {
    // @unchecked: `value` is guarded by `lock`.
    private var value: SweepID?
    private let lock = NSLock()
    var id: SweepID? { lock.withLock { value } }
    func set(_ id: SweepID) { lock.withLock { value = id } }
}

func jsonText(_ v: JSONValue) -> String { v.canonicalJSON }
func jsonText<T: Encodable>(_ v: T) -> String {
    let e = JSONEncoder(); e.outputFormatting = .sortedKeys
    return (try? e.encode(v)).map { String(decoding: $0, as: UTF8.self) } ?? "null"
}
