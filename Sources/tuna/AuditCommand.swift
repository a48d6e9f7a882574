import ArgumentParser
import Foundation
import TunaCore

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "audit",
        abstract: "Who submitted, cancelled, retried or unquarantined what (admin tokens only).")

    @Option(help: "How many of the newest entries.") var limit = 100
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
    }

    func run() async throws {
        let c = try await connection.connect()
        defer { c.close() }
        let rows = try await c.send(AuditQuery(limit: limit)).rows
        if json { return printJSON(rows) }
        var t = Table(["at", "who", "role", "action", "target", "detail"])
        for r in rows { t.add([utcTime(r.at_ms), r.who, r.role, r.action, r.target, r.detail ?? ""]) }
        print(t.render())
    }
}
