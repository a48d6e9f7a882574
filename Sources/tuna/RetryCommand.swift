import ArgumentParser
import TunaCore

struct RetryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "retry",
        abstract: "Requeue a sweep's failed and cancelled jobs; succeeded jobs are left alone.")

    @Argument(help: "The sweep id.") var sweep: Int64
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let c = try await connection.connect()
        defer { c.close() }
        let n = try await c.send(RetryRequest(sweep: sweep))
        if json { return printJSON(["requeued": n.count]) }
        print("requeued \(n.count) job(s)")
    }
}
