import ArgumentParser
import Foundation
import TunaCore

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status",
        abstract: "The coordinator's own health: release, uptime, connections, free disk, storage trouble.")

    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let c = try await connection.connect()
        defer { c.close() }
        let s = try await c.send(CoordinatorStatusQuery())
        if json { return printJSON(s) }
        print("coordinator  tuna \(s.tuna), protocol \(s.protocol), up since \(utcTime(s.started_ms))")
        print("connections  \(s.connections) of at most \(s.max_connections)")
        print("data         \(s.data_dir), \(s.free_bytes.map(bytes) ?? "unknown") free")
        if let warning = storageWarning(s) { print(warning) }
    }
}

/// The line that says the coordinator's disk refuses writes, or nil when it does not.
func storageWarning(_ s: CoordinatorStatus) -> String? {
    guard let problem = s.storage_problem else { return nil }
    return "STORAGE      refusing writes since \(utcTime(s.storage_problem_since_ms ?? 0)) (\(s.storage_refusals ?? 0) refused): \(problem)"
        + "; jobs wait and workers keep their files until there is room"
}

func bytes(_ n: Int64) -> String { ByteCountFormatter.string(fromByteCount: n, countStyle: .binary) }
