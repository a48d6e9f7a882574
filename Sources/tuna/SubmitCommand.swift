import ArgumentParser
import Foundation
import TunaCore

struct SubmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "submit", abstract: "Submit a sweep from a YAML spec.")

    @Argument(help: "The sweep spec (YAML); docs/job-spec.md describes it.")
    var spec: String

    @Flag(help: "Expand and validate only; print the jobs instead of submitting.")
    var dryRun = false

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        guard let text = try? String(contentsOfFile: spec, encoding: .utf8) else { throw Failure("cannot read \(spec)") }
        // Said here, not by a connection the coordinator closes on an oversized frame.
        guard text.utf8.count <= YAML.Limits.bytes else {
            throw Failure("\(spec): \(text.utf8.count) bytes; a spec may have at most \(YAML.Limits.bytes) (\(YAML.Limits.bytes >> 20) MiB)")
        }
        if dryRun {
            let plan: SweepPlan
            do { plan = try SweepSpec.plan(yaml: text) } catch let e as TunaError { throw Failure(e.description) }
            if json {
                print(JSONValue.array(plan.jobs.map { .object(["index": .int($0.index), "hash": .string($0.hash), "params": $0.params]) }).canonicalJSON)
            } else {
                var t = Table(["job"] + plan.varyingKeys + ["hash"])
                for j in plan.jobs { t.add(["\(j.index)"] + plan.varyingKeys.map { j.varying[$0]?.canonicalJSON ?? "-" } + [String(j.hash.prefix(12))]) }
                print(t.render())
                print("\(plan.jobs.count) jobs (\(plan.method.rawValue)); nothing submitted")
            }
            return
        }
        let c = try await connection.connect()
        defer { c.close() }
        // On a terminal, a large sweep's validation and storing are shown as they go (the reply
        // comes once every job is stored): polled on a second connection.
        let progress = await SubmitProgress.start(spec: text, connection: connection)
        let r: Submitted
        do { r = try await c.send(Submit(spec: text)) } catch { await progress?.stop(); throw error }
        await progress?.stop()
        if json { print("{\"sweep\": \(r.sweep), \"jobs\": \(r.jobs)}"); return }
        print("sweep \(r.sweep): \(r.jobs) jobs queued")
        // Say at once when no connected worker can take some of them, instead of letting them
        // wait in silence (a torch job with no torch worker, more GPU memory than any box has).
        // Grouped by the coordinator: a row per reason, whatever the sweep's size.
        let groups = try await c.send(WaitingQuery(sweep: r.sweep, grouped: true)).rows.filter(\.blocked)
        for g in groups.sorted(by: { $0.reason < $1.reason }) {
            print("note: \(g.jobs ?? 1) job(s) cannot start yet: \(g.reason)")
        }
    }
}

/// `tuna submit`'s progress on a terminal: "validating N jobs" until the sweep's row appears,
/// then a bar of its jobs stored so far, read with `list_sweeps` every 300 ms. Only for sweeps
/// of at least `threshold` jobs (smaller ones are stored before a bar would be seen). A display
/// only: if its connection fails, the submit goes on without it.
struct SubmitProgress {
    static let threshold = 10_000
    let task: Task<Void, Never>

    static func start(spec: String, connection: ConnectionOptions) async -> SubmitProgress? {
        guard isatty(STDERR_FILENO) == 1, let total = SweepSpec.jobCount(yaml: spec), total >= threshold,
              let poll = try? await connection.connect() else { return nil }
        let name = (try? YAML.parse(spec))?["name"]?.stringValue ?? ""
        guard let rows = try? await poll.send(ListSweeps()).rows else { poll.close(); return nil }
        let before = rows.map(\.id).max() ?? 0
        let task = Task {
            defer { poll.close() }
            var bar = ProgressBar("submitting \(name.isEmpty ? "the sweep" : name)", total: Int64(total), unit: .jobs)
            while !Task.isCancelled {
                let mine = (try? await poll.send(ListSweeps()))?.rows.last { $0.id > before && $0.name == name }
                if let mine { bar.update(Int64(mine.jobs)) } else { bar.note("validating \(total) jobs") }
                try? await Task.sleep(nanoseconds: 300_000_000)
            }
            bar.finish()
        }
        return SubmitProgress(task: task)
    }

    func stop() async {
        task.cancel()
        await task.value
    }
}
