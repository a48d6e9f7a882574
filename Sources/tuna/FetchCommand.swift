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
    @Flag(help: "Print JSON: each file's name, path, size and SHA-256.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let c = try await connection.connect()
        defer { c.close() }
        let detail = try await c.send(JobQuery(job: job))
        let kind = checkpoint ? "checkpoint" : "adapter"
        let files = detail.artifacts.filter { $0.kind == kind }
        guard !files.isEmpty else { throw Failure("job \(job) has no \(kind) files (status: \(detail.job.status.rawValue))") }
        let dir = URL(fileURLWithPath: out)
        var fetched: [Fetched] = []
        for a in files {
            let path = dir.appendingPathComponent(a.name).path
            var bar = ProgressBar(a.name, total: a.size)
            try await ArtifactTransfer.download(c, a, to: URL(fileURLWithPath: path)) { bar.update($0) }
            bar.finish()
            if !json { print("\(a.sha256)  \(path)") }
            fetched.append(Fetched(name: a.name, path: path, size: a.size, sha256: a.sha256))
        }
        if json { printJSON(fetched) }
    }

    struct Fetched: Encodable {
        var name, path: String
        var size: Int64
        var sha256: String
    }
}
