import Foundation
import GRDB
import TunaCore

/// Group commit: writes that arrive while a transaction is being made durable wait, then go
/// to disk together in the next transaction, each inside its own savepoint. One fsync then
/// serves many callers (200 workers reporting at once), yet every caller gets its reply only
/// after its change is on disk, and a change that throws (a stale attempt, say) is rolled
/// back alone without touching the others in its group.
final class GroupCommitter: @unchecked Sendable {
    // @unchecked: `pending` is guarded by `condition`; the database by its own queue.
    private struct Item {
        /// Runs the change inside the group's transaction, keeping its outcome.
        let run: (Database) -> Void
        /// Resumes the caller: with the kept outcome, or with the commit's own failure.
        let complete: (Error?) -> Void
    }

    private let db: DatabaseQueue
    private let condition = NSCondition()
    private var pending: [Item] = []
    /// The largest group: a bound keeps one group from delaying its replies too long.
    static let maxGroup = 512

    init(db: DatabaseQueue) {
        self.db = db
        let thread = Thread { [weak self] in self?.loop() }
        thread.name = "tuna-store-writer"
        thread.start()
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, Error>) in
            var outcome: Result<T, Error> = .failure(StoreError.database("write did not run"))
            let item = Item(
                run: { db in
                    do {
                        try db.inSavepoint {
                            outcome = .success(try body(db))
                            return .commit
                        }
                    } catch { outcome = .failure(Store.clear(error)) }
                },
                complete: { commitError in
                    if let commitError { cont.resume(throwing: Store.clear(commitError)) } else { cont.resume(with: outcome) }
                })
            condition.lock()
            pending.append(item)
            condition.signal()
            condition.unlock()
        }
    }

    private func loop() {
        while true {
            condition.lock()
            while pending.isEmpty { condition.wait() }
            let n = min(pending.count, GroupCommitter.maxGroup)
            let group = Array(pending.prefix(n))
            pending.removeFirst(n)
            condition.unlock()
            var failure: Error?
            do {
                try db.writeWithoutTransaction { db in
                    try db.inTransaction(.immediate) {
                        for item in group { item.run(db) }
                        return .commit
                    }
                }
            } catch { failure = error }
            for item in group { item.complete(failure) }
        }
    }
}

extension Store {
    /// Errors callers can act on pass through; SQLite's own (a full disk) become one clear reply.
    static func clear(_ error: Error) -> Error {
        switch error {
        case let e as StoreError: return e
        case let e as TunaError: return e
        case let e as DatabaseError where [.SQLITE_FULL, .SQLITE_IOERR, .SQLITE_READONLY, .SQLITE_CANTOPEN].contains(e.resultCode):
            return StoreError.storage("the coordinator's database cannot be written: \(e.message ?? "\(e.resultCode)")")
        default: return StoreError.database("database write failed: \(error)")
        }
    }
}
