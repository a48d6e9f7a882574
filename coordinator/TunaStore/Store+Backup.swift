import Foundation
import GRDB
import TunaCore

/// Online snapshots of the database, for `tuna backup`: SQLite's backup API reads a consistent
/// state from a live database (WAL lets it run beside the coordinator's writes) into a new file.
extension Store {
    /// Copies the database at `source` (which a coordinator may be using) into a new file at
    /// `destination`, checks the copy's integrity and returns the artifacts it names, as
    /// (sha256, size), each once.
    public static func snapshot(source: String, destination: String) throws -> [(sha256: String, size: Int64)] {
        var config = Configuration()
        config.readonly = true
        config.prepareDatabase { db in try db.execute(sql: "PRAGMA busy_timeout = 5000") }
        do {
            let live = try DatabaseQueue(path: source, configuration: config)
            try? FileManager.default.removeItem(atPath: destination)
            let copy = try DatabaseQueue(path: destination)
            try live.backup(to: copy)
            return try copy.read { db in
                let check = try String.fetchAll(db, sql: "PRAGMA integrity_check")
                guard check == ["ok"] else { throw StoreError.database("the snapshot fails its integrity check: \(check.joined(separator: "; "))") }
                return try Row.fetchAll(db, sql: "SELECT sha256, MAX(size) FROM artifacts GROUP BY sha256 ORDER BY sha256").map { ($0[0], $0[1]) }
            }
        } catch let e as StoreError { throw e } catch {
            throw StoreError.database("cannot snapshot \(source): \(error)")
        }
    }
}
