import ArgumentParser
import Foundation
import TunaCore
import TunaWire

/// `tuna plot SWEEP --out FILE.svg|.png` (or `--job JOB`): a figure for reports and papers from
/// what the coordinator stored (`SweepPlot`; docs/exports.md). SVG is written here; PNG is the
/// SVG rendered by librsvg's `rsvg-convert`, which must be installed.
struct PlotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plot",
        abstract: "Plot a sweep (every job's curve, the objective against each varied parameter) or one job's curves, as SVG or PNG.")

    @Argument(help: "The sweep id.") var sweep: Int64?
    @Option(help: "Plot this job's train and eval curves instead.") var job: Int64?
    @Option(help: "The file to write: .svg, or .png (needs rsvg-convert: apt-get install librsvg2-bin).") var out: String
    @Option(help: "The curve of a sweep's jobs: a tag as in `tuna export` (default: eval/loss where jobs have it, else train/loss).") var metric: String?
    @Flag(help: "Print JSON: the file written, its curves and its parameter panels.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        guard (sweep == nil) != (job == nil) else { throw ValidationError("give a sweep id or --job ID") }
        let ext = URL(fileURLWithPath: out).pathExtension.lowercased()
        guard ext == "svg" || ext == "png" else { throw ValidationError("--out: \(out) is not a .svg or .png file") }
    }

    func run() async throws {
        let c = try await connection.connect()
        defer { c.close() }
        func curves(_ job: JobID) async throws -> Curves {
            try await ExportCommand.curves(c, job: job, attempts: try await c.send(JobQuery(job: job)).attempts)
        }
        let plot: SweepPlot
        if let job {
            let detail = try await c.send(JobQuery(job: job))
            let cv = try await curves(job)
            let series = ["train/loss", "eval/loss"].compactMap { tag in
                cv.series[tag].map { SweepPlot.Series(label: tag, points: $0.map { (Double($0.step), $0.value) }) }
            }
            guard !series.isEmpty else { throw Failure("job \(job) has reported no loss yet (status: \(detail.job.status.rawValue))") }
            plot = SweepPlot(title: "job \(job) (sweep \(detail.job.sweep), \(detail.job.status.rawValue))", yLabel: "loss", series: series)
        } else {
            let sweep = sweep!
            guard let row = try await c.send(ListSweeps()).rows.first(where: { $0.id == sweep }) else { throw Failure("no sweep \(sweep)") }
            let jobs = try await c.sendRaw(ResultsQuery(sweep: sweep)).resultRows()
            var all: [(ResultRow, Curves)] = []
            for j in jobs { all.append((j, try await curves(j.id))) }
            let tag = metric ?? (all.contains { $0.1.series["eval/loss"] != nil } ? "eval/loss" : "train/loss")
            let series = all.compactMap { j, cv -> SweepPlot.Series? in
                guard let points = cv.series[tag] else { return nil }
                let what = row.varying.map { "\($0)=\(j.params[$0].map { $0.stringValue ?? $0.canonicalJSON } ?? "-")" }.joined(separator: " ")
                return SweepPlot.Series(label: "job \(j.id)" + (what.isEmpty ? "" : ": \(what)"), points: points.map { (Double($0.step), $0.value) })
            }
            guard !series.isEmpty else { throw Failure("sweep \(sweep): no job has reported \(tag) yet") }
            let objective = row.objective ?? .default
            let scatters = row.varying.map { key in
                SweepPlot.Scatter(parameter: key, points: jobs.compactMap { j in
                    guard let y = j.objective, y.isFinite, let x = j.params[key] else { return nil }
                    return (x, y)
                })
            }.filter { !$0.points.isEmpty }
            plot = SweepPlot(title: "sweep \(sweep)" + (row.name.isEmpty ? "" : ": \(row.name)") + " (\(jobs.count) jobs)", yLabel: tag,
                             series: series, scatters: scatters, objective: "\(objective.metric) (\(objective.mode == .min ? "lower" : "higher") is better)")
        }
        let target = URL(fileURLWithPath: out)
        if target.pathExtension.lowercased() == "svg" {
            try writing(out) { try Data(plot.svg.utf8).write(to: target, options: .atomic) }
        } else {
            try Self.png(plot.svg, to: target)
        }
        if json { return printJSON(Plotted(out: out, series: plot.series.filter { !$0.points.isEmpty }.count, panels: plot.scatters.count)) }
        print("wrote \(out)")
    }

    struct Plotted: Encodable {
        var out: String
        var series: Int
        var panels: Int
    }

    /// Renders SVG to PNG with rsvg-convert (librsvg): Tuna draws no pixels of its own.
    static func png(_ svg: String, to target: URL) throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("tuna-plot-\(UUID().uuidString).svg")
        try Data(svg.utf8).write(to: tmp)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["rsvg-convert", "--format", "png", "--output", target.path, tmp.path]
        do { try p.run() } catch { throw Failure("writing PNG needs rsvg-convert (apt-get install librsvg2-bin); --out FILE.svg needs nothing") }
        p.waitUntilExit()
        if p.terminationStatus == 127 { throw Failure("writing PNG needs rsvg-convert (apt-get install librsvg2-bin); --out FILE.svg needs nothing") }
        guard p.terminationStatus == 0 else { throw Failure("rsvg-convert failed (exit \(p.terminationStatus)) writing \(target.path)") }
    }
}
