import ArgumentParser
import Foundation
import TunaCore

struct WorkersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "workers",
        abstract: "List workers: connection, hardware, running jobs, quarantine.")

    @Option(help: "Lift the quarantine of this worker (id or name).") var unquarantine: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let c = try await connection.connect()
        defer { c.close() }
        if let w = unquarantine {
            _ = try await c.send(Unquarantine(worker: w))
            print("worker \(w) may take jobs again")
            return
        }
        let rows = try await c.send(ListWorkers()).rows
        if json { return printJSON(rows) }
        var t = Table(["worker", "name", "state", "trainers", "gpus", "driver", "cpus", "ram_gb", "running", "last_seen"])
        for r in rows {
            let state = r.quarantined ? "QUARANTINED" : (r.connected ? "connected" : "gone")
            let gpus = r.capabilities.gpus.isEmpty ? "-" : r.capabilities.gpus.map { "\($0.index):\($0.name) \(fmt($0.memory_gb, 1))G" }.joined(separator: ", ")
            let drivers = Set(r.capabilities.gpus.compactMap(\.driver)).sorted().joined(separator: ",")
            t.add([String(r.id.prefix(8)), r.name, state, r.capabilities.trainers.joined(separator: ","), gpus, drivers.isEmpty ? "-" : drivers,
                   "\(r.capabilities.cpu_cores)", fmt(r.capabilities.ram_gb, 0), "\(r.running)", utcTime(r.last_seen_ms)])
        }
        print(t.render())
        for r in rows where r.quarantined { print("\(r.name): \(r.quarantine_reason ?? "")") }
        // The coordinator's own trouble is not the workers', but this is where an operator looks.
        if let warning = storageWarning(try await c.send(CoordinatorStatusQuery())) { print(warning) }
    }
}
