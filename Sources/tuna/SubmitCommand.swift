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
        let r = try await c.send(Submit(spec: text))
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
