import ArgumentParser
import TunaCore

struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel",
        abstract: "Cancel a sweep's queued and running jobs (or one job with --job); running trainers are stopped.")

    @Argument(help: "The sweep id.") var sweep: Int64?
    @Option(help: "Cancel this job only.") var job: Int64?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        guard (sweep == nil) != (job == nil) else { throw ValidationError("give a sweep id or --job ID") }
    }

    func run() async throws {
        let c = try await connection.connect()
        defer { c.close() }
        let n = try await c.send(CancelRequest(sweep: sweep, job: job))
        if json { return printJSON(["cancelled": n.count]) }
        print("cancelled \(n.count) job(s)")
    }
}
