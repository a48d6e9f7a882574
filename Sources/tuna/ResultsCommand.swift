import ArgumentParser
import Foundation
import TunaCore
import TunaWire

struct ResultsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "results",
        abstract: "The results table: swept parameters, status and losses of every job.")

    @Option(help: "Only this sweep.") var sweep: Int64?
    @Option(help: "Sort by id, objective, final_train_loss, best_val_loss, final_val_loss, tokens_per_s, attempts or status (the table: objective, best first; --json and --csv: id).") var sort: String?
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
        // The table reads best first by each sweep's objective; files (CSV) keep job order
        // unless asked, so they diff cleanly between runs.
        let rows = try await c.sendRaw(ResultsQuery(sweep: sweep, sort: sort ?? (csv ? nil : "objective"))).resultRows()
        let objectives = Dictionary(uniqueKeysWithValues: try await c.send(ListSweeps()).rows.map { ($0.id, $0.objective ?? .default) })
        let best = Self.bestJobs(rows, objectives: objectives)
        let keys = Array(Set(rows.flatMap { $0.params.keys })).sorted()
        // Evaluation numbers beyond the loss, a column each where any job has them (the
        // baseline loss; a prune sweep's KL, top-1 agreement, pruned-hit share, ...).
        let metricKeys = Array(Set(rows.flatMap { ($0.metrics ?? [:]).keys })).sorted()
        // The `best` mark is for people; CSV keeps the job id first, as scripts read it.
        let mark = csv ? [] : ["best"]
        var t = Table(mark + ["job"] + keys + ["status", "attempts", "objective", "train_loss", "best_val", "final_val"] + metricKeys
                      + ["tok/s", "worker", "adapter"])
        for r in rows {
            t.add((csv ? [] : [best.values.contains(r.id) ? "*" : ""]) + ["\(r.id)"] + keys.map { r.params[$0].map(cellText) ?? "-" } + [
                r.status.rawValue, "\(r.attempts)", fmt(r.objective), fmt(r.final_train_loss), fmt(r.best_val_loss), fmt(r.final_val_loss),
            ] + metricKeys.map { fmt(r.metrics?[$0]) } + [
                fmt(r.tokens_per_s, 0), r.worker ?? "-", r.adapter_sha256.map { String($0.prefix(12)) } ?? "-",
            ])
        }
        print(csv ? t.csv() : t.render())
        guard !csv else { return }
        for (sweep, job) in best.sorted(by: { $0.key < $1.key }) {
            let o = objectives[sweep] ?? .default
            print("sweep \(sweep): best job \(job) (\(o.metric) \(fmt(rows.first { $0.id == job }?.objective)), \(o.mode == .min ? "lowest" : "highest"))")
        }
    }

    /// Each sweep's best succeeded job by its objective (ties: the lower id): a running or
    /// stopped job has no adapter to take away. Sweeps with none yet have none.
    static func bestJobs(_ rows: [ResultRow], objectives: [SweepID: Objective]) -> [SweepID: JobID] {
        var best: [SweepID: ResultRow] = [:]
        for r in rows where r.status == .succeeded {
            guard let v = r.objective else { continue }
            let o = objectives[r.sweep] ?? .default
            if let b = best[r.sweep], let bv = b.objective, !o.better(v, than: bv), !(v == bv && r.id < b.id) { continue }
            best[r.sweep] = r
        }
        return best.mapValues(\.id)
    }
}

func cellText(_ v: JSONValue) -> String {
    switch v {
    case .string(let s): return s
    case .number(let d): return String(format: "%g", d)
    default: return v.canonicalJSON
    }
}
