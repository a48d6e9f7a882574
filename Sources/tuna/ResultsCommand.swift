import ArgumentParser
import Foundation
import TunaCore
import TunaWire

struct ResultsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "results",
        abstract: "The results table: swept parameters, status and losses of every job.")

    @Option(help: "Only this sweep.") var sweep: Int64?
    @Option(help: "Sort by id, final_train_loss, best_val_loss, final_val_loss, tokens_per_s, attempts or status.") var sort: String?
    @Flag(help: "Print JSON (one object per job).") var json = false
    @Flag(help: "Print CSV.") var csv = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let c = try await connection.connect()
        defer { c.close() }
        if json {
            // Printed as the coordinator wrote it: no decode and re-encode of 100,000 rows.
            let reply = try await c.sendRaw(ResultsQuery(sweep: sweep, sort: sort))
            _ = try reply.decode(Count.self)
            FileHandle.standardOutput.write(reply.binary ?? Data("[]".utf8))
            FileHandle.standardOutput.write(Data("\n".utf8))
            return
        }
        let rows = try await c.sendRaw(ResultsQuery(sweep: sweep, sort: sort)).resultRows()
        let keys = Array(Set(rows.flatMap { $0.params.keys })).sorted()
        // Evaluation numbers beyond the loss, a column each where any job has them (the
        // baseline loss; a prune sweep's KL, top-1 agreement, pruned-hit share, ...).
        let metricKeys = Array(Set(rows.flatMap { ($0.metrics ?? [:]).keys })).sorted()
        var t = Table(["job"] + keys + ["status", "attempts", "train_loss", "best_val", "final_val"] + metricKeys
                      + ["tok/s", "worker", "adapter"])
        for r in rows {
            t.add(["\(r.id)"] + keys.map { r.params[$0].map(cellText) ?? "-" } + [
                r.status.rawValue, "\(r.attempts)", fmt(r.final_train_loss), fmt(r.best_val_loss), fmt(r.final_val_loss),
            ] + metricKeys.map { fmt(r.metrics?[$0]) } + [
                fmt(r.tokens_per_s, 0), r.worker ?? "-", r.adapter_sha256.map { String($0.prefix(12)) } ?? "-",
            ])
        }
        print(csv ? t.csv() : t.render())
    }
}

func cellText(_ v: JSONValue) -> String {
    switch v {
    case .string(let s): return s
    case .number(let d): return String(format: "%g", d)
    default: return v.canonicalJSON
    }
}
