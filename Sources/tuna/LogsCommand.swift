import ArgumentParser
import Foundation
import TunaCore

struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs",
        abstract: "A job's loss curve and log (its latest attempt, or --attempt N).")

    @Argument(help: "The job id.") var job: Int64
    @Option(help: "Which attempt (default: the latest).") var attempt: Int?
    @Flag(help: "Also print the trainer's non-JSON output lines.") var all = false
    @Flag(help: "Print JSON (every event).") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let c = try await connection.connect()
        defer { c.close() }
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

/// The curve at a glance: one block character per point (downsampled to 60).
func sparkline(_ xs: [Double]) -> String {
    let blocks = Array("▁▂▃▄▅▆▇█")
    let step = max(1, xs.count / 60)
    let pts = stride(from: 0, to: xs.count, by: step).map { xs[$0] }
    guard let lo = pts.min(), let hi = pts.max(), hi > lo else { return String(repeating: "▄", count: pts.count) }
    return String(pts.map { blocks[min(7, Int((($0 - lo) / (hi - lo)) * 7.999))] }) + String(format: "  %.4f → %.4f", xs.first!, xs.last!)
}
