import ArgumentParser
import Foundation
import TunaCore
import TunaWire

struct FetchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fetch",
        abstract: "Download a job's adapter (PEFT layout), checking every file's SHA-256.")

    @Argument(help: "The job id.") var job: Int64
    @Option(help: "Directory to write the adapter files into.") var out: String
    @Flag(help: "Fetch the latest checkpoint instead of the adapter.") var checkpoint = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let c = try await connection.connect()
        defer { c.close() }
        let detail = try await c.send(JobQuery(job: job))
        let kind = checkpoint ? "checkpoint" : "adapter"
        let files = detail.artifacts.filter { $0.kind == kind }
        guard !files.isEmpty else { throw ValidationError("job \(job) has no \(kind) files (status: \(detail.job.status.rawValue))") }
        let dir = URL(fileURLWithPath: out)
        for a in files {
            try await ArtifactTransfer.download(c, a, to: dir.appendingPathComponent(a.name))
            print("\(a.sha256)  \(dir.appendingPathComponent(a.name).path)")
        }
    }
}
