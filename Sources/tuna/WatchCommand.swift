import ArgumentParser
import Foundation
import TunaCore
import TunaWire

struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "watch",
        abstract: "Follow a sweep's progress until none of its jobs is queued or running.")

    @Argument(help: "The sweep id (default: the newest sweep).") var sweep: Int64?
    @Option(help: "Seconds between updates.") var interval = 1.0
    @Flag(help: "Print each update as one line of JSON: the sweep's counts and its best job by its objective.") var json = false
    @Flag(help: "A line per change even on a terminal (where watch otherwise redraws a progress bar per running job).") var plain = false
    @OptionGroup var connection: ConnectionOptions

    /// The running jobs shown with a bar each; the rest are counted.
    static let barsShown = 16

    func run() async throws {
        let c = try await connection.connect()
        defer { c.close() }
        let live = !json && !plain && isatty(STDOUT_FILENO) == 1
        var progress: [JobID: JobProgress] = [:]
        var drawn = 0
        var last = ""
        while true {
            let sweeps = try await c.send(ListSweeps()).rows
            guard let s = sweep.map({ id in sweeps.first { $0.id == id } }) ?? sweeps.last else {
                throw Failure(sweep.map { "no sweep \($0)" } ?? "no sweeps yet")
            }
            let rows = try await c.sendRaw(ResultsQuery(sweep: s.id, sort: "objective")).resultRows()
            let best = rows.first { $0.objective != nil && $0.status == .succeeded }
            let objective = s.objective ?? .default
            let line = "sweep \(s.id) \(s.name): \(s.succeeded)/\(s.jobs) succeeded, \(s.running) running, \(s.queued) queued, "
                + ((s.paused ?? 0) > 0 ? "\(s.paused!) paused, " : "")
                + "\(s.failed) failed, \(s.cancelled) cancelled" + ((s.stopped ?? 0) > 0 ? ", \(s.stopped!) stopped early" : "")
                + (best.map { " | best \(objective.metric) \(fmt($0.objective)) (job \($0.id))" } ?? "")
            if live {
                // Redrawn in place: up over the last drawing, clear, draw again.
                let running = rows.filter { $0.status == .running }.sorted { $0.id < $1.id }
                var lines = [line]
                for job in running.prefix(Self.barsShown) {
                    try await progress[job.id, default: JobProgress()].update(c, job: job)
                    lines.append(progress[job.id]!.line(job, varying: s.varying))
                }
                if running.count > Self.barsShown { lines.append("  and \(running.count - Self.barsShown) more running") }
                progress = progress.filter { id, _ in running.contains { $0.id == id } }
                let workers = try await c.send(ListWorkers()).rows.filter(\.connected)
                lines.append("workers: \(workers.count) connected" + (workers.isEmpty ? "" : " (" + workers.map { "\($0.name): \($0.running) running" }.joined(separator: ", ") + ")"))
                // Each line cut to the terminal's width: a wrapped line would take two rows, and
                // moving up by the lines drawn would leave the rest of the old drawing behind.
                let width = Self.terminalColumns()
                lines = lines.map { $0.count < width ? $0 : String($0.prefix(max(1, width - 1))) }
                let redraw = (drawn > 0 ? "\u{1B}[\(drawn)F\u{1B}[J" : "") + lines.joined(separator: "\n") + "\n"
                FileHandle.standardOutput.write(Data(redraw.utf8))
                drawn = lines.count
            } else if line != last {
                if json {
                    printJSONLine(Update(sweep: s, best_job: best?.id, best_objective: best?.objective, best_val_loss: best?.best_val_loss))
                } else { print(line) }
                last = line
            }
            if s.queued + s.running + (s.paused ?? 0) == 0 {
                // Done watching; a sweep with failed jobs is not a success to a script.
                if s.failed > 0 { throw Failure("sweep \(s.id): \(s.failed) job(s) failed (tuna jobs \(s.id) says why)") }
                return
            }
            try await Task.sleep(nanoseconds: UInt64(max(0.1, interval) * 1e9))
        }
    }

    /// The terminal's width in columns (80 if it does not say).
    static func terminalColumns() -> Int {
        var size = winsize()
        guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return 80 }
        return Int(size.ws_col)
    }

    struct Update: Encodable {
        var sweep: SweepRow
        /// Best by the sweep's objective.
        var best_job: JobID?
        var best_objective: Double?
        var best_val_loss: Double?
    }
}
