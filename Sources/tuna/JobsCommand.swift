import ArgumentParser
import Foundation
import TunaCore
import TunaWire

struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "jobs",
        abstract: "List jobs (of one sweep with --sweep), or show one job with its attempts and artifacts.")

    @Argument(help: "A job id: show that job in detail.") var job: Int64?
    @Option(help: "Only this sweep's jobs.") var sweep: Int64?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let c = try await connection.connect()
        defer { c.close() }
        if let job {
            let d = try await c.send(JobQuery(job: job))
            if json { return printJSON(d) }
            let j = d.job
            print("job \(j.id) of sweep \(j.sweep) (#\(j.index)): \(j.status.rawValue), \(j.attempts) attempt(s)")
            print("params: " + j.params.keys.sorted().map { "\($0)=\(j.params[$0]!.canonicalJSON)" }.joined(separator: " "))
            // A stop's reason reads as it is (and is the last decision, listed below).
            if let e = j.error, j.status != .stopped || (d.decisions ?? []).isEmpty { print(j.status == .stopped ? e : "error: \(e)") }
            if j.status == .queued, let w = try await waitingReasons(c, sweep: j.sweep)[j.id] { print("waiting: \(w.reason)") }
            var t = Table(["attempt", "worker", "state", "started", "seconds", "error"])
            for a in d.attempts {
                let secs = a.ended_ms.map { String(format: "%.1f", Double($0 - a.started_ms) / 1000) } ?? "-"
                t.add(["\(a.attempt)", a.worker, a.state, utcTime(a.started_ms), secs, a.error ?? ""])
            }
            print(t.render())
            // The early-stopping rule's decisions, each with the values it was made from.
            for dec in d.decisions ?? [] { print("\(utcTime(dec.at_ms))  \(dec.reason)") }
            if !d.artifacts.isEmpty {
                var at = Table(["artifact", "kind", "bytes", "sha256"])
                for a in d.artifacts { at.add([a.name, a.kind, "\(a.size)", a.sha256]) }
                print(at.render())
            }
            return
        }
        let rows = try await c.sendRaw(ResultsQuery(sweep: sweep)).resultRows()
        let waiting = try await waitingReasons(c, sweep: sweep)
        if json { return printJSON(rows.map { JobListRow(row: $0, waiting: waiting[$0.id]?.reason) }) }
        var t = Table(["job", "sweep", "status", "attempts", "worker", "error / why it waits"])
        for r in rows {
            t.add(["\(r.id)", "\(r.sweep)", r.status.rawValue, "\(r.attempts)", r.worker ?? "-", r.error ?? waiting[r.id]?.reason ?? ""])
        }
        print(t.render())
    }
}

/// A row of `tuna jobs --json`: the results row plus, for a queued job, why it waits.
struct JobListRow: Encodable {
    var row: ResultRow
    var waiting: String?
    func encode(to encoder: Encoder) throws {
        try row.encode(to: encoder)
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(waiting, forKey: .waiting)
    }
    enum Key: String, CodingKey { case waiting }
}

/// Why each queued job (of one sweep, or all) waits, by job id.
func waitingReasons(_ c: WireClient, sweep: SweepID?) async throws -> [JobID: WaitingRow] {
    let rows = try await c.send(WaitingQuery(sweep: sweep)).rows
    return Dictionary(rows.map { ($0.job, $0) }, uniquingKeysWith: { a, _ in a })
}


