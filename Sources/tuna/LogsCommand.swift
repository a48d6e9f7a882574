import ArgumentParser
import Foundation
import TunaCore
import TunaWire

struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs",
        abstract: "A job's loss curve and log (its latest attempt, or --attempt N).")

    @Argument(help: "The job id.") var job: Int64
    @Option(help: "Which attempt (default: the latest).") var attempt: Int?
    @Flag(help: "Also print the trainer's non-JSON output lines.") var all = false
    @Flag(help: "Print JSON (every event).") var json = false
    @Flag(help: "Keep printing the job's events as they come (a line each; JSON lines with --json), across its attempts, until it ends.") var follow = false
    @Option(help: "With --follow: seconds between polls.") var interval = 1.0
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let c = try await connection.connect()
        defer { c.close() }
        if follow { return try await followJob(c) }
        let rows = try await c.send(LogsQuery(job: job, attempt: attempt)).rows
        if json { return printJSON(rows) }
        var t = Table(["attempt", "event", "step", "epoch", "loss", "lr", "tok/s"])
        var losses: [Double] = []
        for r in rows {
            let kind = r.event["event"]?.stringValue ?? "?"
            if kind == "log" {
                if all { print("[\(r.event["stream"]?.stringValue ?? "")] \(r.event["line"]?.stringValue ?? "")") }
                continue
            }
            if kind == "step", let l = r.event["loss"]?.doubleValue { losses.append(l) }
            t.add(["\(r.attempt)", kind, r.event["step"].map(cellText) ?? "-", r.event["epoch"].map(cellText) ?? "-",
                   fmt(r.event["loss"]?.doubleValue), r.event["lr"].map(cellText) ?? "-", fmt(r.event["tokens_per_s"]?.doubleValue, 0)])
        }
        print(t.render())
        if losses.count > 1 { print("train loss: " + sparkline(losses)) }
    }
}

extension LogsCommand {
    /// `--follow`: the events after the last one printed, polled; a new attempt is followed from
    /// its start; stops once the job is not queued, running or paused and nothing is left to print.
    func followJob(_ c: WireClient) async throws {
        let latest = try await c.send(JobQuery(job: job)).job.attempts
        var number = attempt ?? max(1, latest)
        var last: Int64 = -1
        while true {
            let rows = try await c.send(LogsQuery(job: job, attempt: number, afterSeq: last)).rows
            for r in rows {
                last = max(last, r.seq)
                let kind = r.event["event"]?.stringValue ?? "?"
                if json { printJSONLine(r); continue }
                if kind == "log" {
                    if all { print("[\(r.event["stream"]?.stringValue ?? "")] \(r.event["line"]?.stringValue ?? "")") }
                    continue
                }
                let fields = [("step", r.event["step"].map(cellText)), ("loss", r.event["loss"]?.doubleValue.map { fmt($0) }),
                              ("lr", r.event["lr"].map(cellText)), ("tok/s", r.event["tokens_per_s"]?.doubleValue.map { fmt($0, 0) })]
                print("attempt \(r.attempt)  \(kind)" + fields.compactMap { k, v in v.map { "  \(k) \($0)" } }.joined())
            }
            let detail = try await c.send(JobQuery(job: job))
            if attempt == nil, detail.job.attempts > number {
                number = detail.job.attempts
                last = -1
                continue
            }
            // A paused job may yet be promoted: followed, as `tuna watch` waits for it too.
            if rows.isEmpty, ![.queued, .running, .paused].contains(detail.job.status) {
                if !json { print("job \(job): \(detail.job.status.rawValue)" + (detail.job.error.map { ": \($0)" } ?? "")) }
                return
            }
            try await Task.sleep(nanoseconds: UInt64(max(0.1, interval) * 1e9))
        }
    }
}

/// The curve at a glance: one block character per point (downsampled to 60).
func sparkline(_ xs: [Double]) -> String {
    let blocks = Array("▁▂▃▄▅▆▇█")
    let step = max(1, xs.count / 60)
    let pts = stride(from: 0, to: xs.count, by: step).map { xs[$0] }
    guard let lo = pts.min(), let hi = pts.max(), hi > lo else { return String(repeating: "▄", count: pts.count) }
    return String(pts.map { blocks[min(7, Int((($0 - lo) / (hi - lo)) * 7.999))] }) + String(format: "  %.4f → %.4f", xs.first!, xs.last!)
}
