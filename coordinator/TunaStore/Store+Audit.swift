import Foundation
import GRDB
import TunaCore

/// Who did it, as the audit log and `sweeps.submitted_by` record it: a token's name and role.
public struct Actor: Sendable, Equatable {
    public var name: String
    public var role: String
    public init(name: String, role: String) { self.name = name; self.role = role }
    /// No tokens configured (a loopback coordinator) or a caller inside the coordinator.
    public static let local = Actor(name: "local", role: "admin")
}

/// The audit log: one row per submit, cancel, retry and unquarantine, written in the same
/// transaction as the change it records.
extension Store {
    func audit(_ db: Database, now: Int64, _ who: Actor, _ action: String, _ target: String, _ detail: String?) throws {
        try db.execute(sql: "INSERT INTO audit (at_ms, who, role, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
                       arguments: [now, who.name, who.role, action, target, detail])
    }

    /// The newest `limit` entries, oldest first.
    public func audit(limit: Int) throws -> [AuditRow] {
        try read { db in
            try Row.fetchAll(db, sql: """
                SELECT at_ms, who, role, action, target, detail FROM (SELECT * FROM audit ORDER BY id DESC LIMIT ?) ORDER BY id
                """, arguments: [max(1, limit)]).map {
                AuditRow(at_ms: $0[0], who: $0[1], role: $0[2], action: $0[3], target: $0[4], detail: $0[5])
            }
        }
    }
}

extension Store {
    /// An audit entry for an action that is not itself a store change (`tuna gc`'s file removal).
    public func recordAudit(_ who: Actor, action: String, target: String, detail: String?, now: Int64) async throws {
        try await write { db in try self.audit(db, now: now, who, action, target, detail) }
    }
}
