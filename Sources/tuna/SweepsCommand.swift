import ArgumentParser
import Foundation
import TunaCore

struct SweepsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sweeps", abstract: "List sweeps and their progress.")
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let c = try await connection.connect()
        defer { c.close() }
        let rows = try await c.send(ListSweeps()).rows
        if json { return printJSON(rows) }
        var t = Table(["sweep", "name", "jobs", "queued", "running", "paused", "succeeded", "failed", "cancelled", "stopped", "objective", "varying"])
        for r in rows {
            let o = r.objective ?? .default
            t.add(["\(r.id)", r.name, "\(r.jobs)", "\(r.queued)", "\(r.running)", "\(r.paused ?? 0)", "\(r.succeeded)", "\(r.failed)", "\(r.cancelled)",
                   "\(r.stopped ?? 0)", "\(o.metric) (\(o.mode.rawValue))", r.varying.joined(separator: ",")])
        }
        print(t.render())
    }
}
