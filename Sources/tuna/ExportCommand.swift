import ArgumentParser
import Foundation
import TunaCore
import TunaWire

/// `tuna export SWEEP --tensorboard DIR --mlflow DIR`: a sweep as the trackers teams already
/// use show it, from what the coordinator stored (docs/exports.md). One run per job in each:
/// its curves (`Curves`: train and eval series over every attempt), and in MLflow its swept
/// parameters, status, and the adapter as an artifact. Exporting again replaces the runs.
struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export",
        abstract: "Write a sweep's runs for TensorBoard (event files) and/or MLflow (a file store).")

    @Argument(help: "The sweep id.") var sweep: Int64
    @Option(help: "Directory for TensorBoard: one run per job, DIR/sweep-S/job-J.") var tensorboard: String?
    @Option(help: "MLflow file store (mlruns directory): one experiment per sweep, one run per job, the adapter as an artifact.") var mlflow: String?
    @Flag(help: "MLflow: leave the adapters out (curves, parameters and tags only).") var noArtifacts = false
    @Flag(help: "Print JSON: what was written.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        if tensorboard == nil && mlflow == nil { throw ValidationError("give --tensorboard DIR, --mlflow DIR or both") }
    }

    struct Written: Encodable {
        var job: JobID
        var tensorboard: String?
        var mlflow_run: String?
        var points: Int
    }

    func run() async throws {
        let c = try await connection.connect()
        defer { c.close() }
        guard let row = try await c.send(ListSweeps()).rows.first(where: { $0.id == sweep }) else { throw Failure("no sweep \(sweep)") }
        let jobs = try await c.sendRaw(ResultsQuery(sweep: sweep)).resultRows()
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let experimentName = "tuna sweep \(sweep)" + (row.name.isEmpty ? "" : ": \(row.name)")
        let store = try mlflow.map { m in try writing(m) { try MLflowFileStore(root: URL(fileURLWithPath: m), nowMs: now) } }
        let experiment = try store.map { s in try writing(mlflow!) { try s.experiment(named: experimentName, nowMs: now) } }
        var written: [Written] = []
        for job in jobs {
            let detail = try await c.send(JobQuery(job: job.id))
            let curves = try await Self.curves(c, job: job.id, attempts: detail.attempts)
            let startMs = detail.attempts.map(\.started_ms).min() ?? row.created_ms
            var w = Written(job: job.id, points: curves.series.values.map(\.count).reduce(0, +))
            if let tensorboard {
                let dir = URL(fileURLWithPath: tensorboard).appendingPathComponent("sweep-\(sweep)").appendingPathComponent("job-\(job.id)")
                let file = dir.appendingPathComponent("events.out.tfevents.\(startMs / 1000).tuna")
                try writing(dir.path) {
                    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
                    // Our earlier export of this run goes: TensorBoard would read both files.
                    for old in try FileManager.default.contentsOfDirectory(atPath: dir.path) where old.hasPrefix("events.out.tfevents.") && old.hasSuffix(".tuna") {
                        try FileManager.default.removeItem(at: dir.appendingPathComponent(old))
                    }
                    try TensorBoardEvents.file(curves, startMs: startMs).write(to: file, options: .atomic)
                }
                w.tensorboard = file.path
            }
            if let store, let experiment {
                let id = MLflowFileStore.runID("tuna \(experiment) \(sweep) \(job.id)")
                let ended = detail.attempts.compactMap(\.ended_ms).max()
                let run = MLflowFileStore.Run(
                    name: "job-\(job.id)", startMs: startMs, endMs: [.succeeded, .failed, .cancelled, .stopped].contains(job.status) ? ended : nil, status: Self.status(job.status),
                    params: job.params.mapValues { $0.stringValue ?? $0.canonicalJSON },
                    tags: ["tuna.sweep": "\(sweep)", "tuna.job": "\(job.id)", "tuna.status": job.status.rawValue,
                           "tuna.attempts": "\(job.attempts)"].merging(job.error.map { ["tuna.error": $0] } ?? [:]) { a, _ in a },
                    curves: curves)
                let artifacts = try writing(mlflow!) { try store.write(run, id: id, experiment: experiment) }
                if !noArtifacts, job.status == .succeeded {
                    for a in detail.artifacts where a.kind == "adapter" {
                        var bar = ProgressBar("job \(job.id) \(a.name)", total: a.size)
                        try await ArtifactTransfer.download(c, a, to: artifacts.appendingPathComponent("adapter").appendingPathComponent(a.name)) { bar.update($0) }
                        bar.finish()
                    }
                }
                w.mlflow_run = id
            }
            written.append(w)
        }
        if json { return printJSON(written) }
        if let tensorboard { print("tensorboard: \(jobs.count) run(s) in \(tensorboard)/sweep-\(sweep)  (tensorboard --logdir \(tensorboard))") }
        if let mlflow, let experiment {
            print("mlflow: experiment \(experiment) (\(experimentName)), \(jobs.count) run(s) in \(mlflow)  (MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri \(mlflow))")
        }
    }

    /// A job's curves over all its attempts (`attempts`: the job's, from `job`), as `tuna export`
    /// and `tuna plot` both draw them.
    static func curves(_ c: WireClient, job: JobID, attempts: [AttemptRow]) async throws -> Curves {
        var events: [EventRow] = []
        for a in attempts { events += try await c.send(LogsQuery(job: job, attempt: a.attempt)).rows }
        return Curves(events: events)
    }

    static func status(_ s: JobStatus) -> MLflowFileStore.Status {
        switch s {
        case .succeeded: return .finished
        case .failed: return .failed
        case .cancelled, .stopped: return .killed
        default: return .running
        }
    }
}
