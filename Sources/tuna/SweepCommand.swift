import ArgumentParser
import TunaCore

/// `tuna sweep ...`: changes to one sweep after its submit.
struct SweepCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sweep",
        abstract: "Change a sweep after its submit.", subcommands: [Extend.self])

    struct Extend: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "extend",
            abstract: "Add jobs to a random or TPE sweep: drawing goes on where it stopped (TPE proposes them when they start).")

        @Argument(help: "The sweep id.") var sweep: Int64
        @Option(help: "How many jobs to add.") var count: Int
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var connection: ConnectionOptions

        func validate() throws {
            guard count >= 1 else { throw ValidationError("--count must be at least 1") }
        }

        func run() async throws {
            let c = try await connection.connect()
            defer { c.close() }
            let added = try await c.send(ExtendSweep(sweep: sweep, count: count))
            if json { return printJSON(added) }
            print("sweep \(added.sweep): \(added.jobs) job(s) added")
        }
    }
}
