import ArgumentParser
import Foundation
import TunaCore
import TunaWire

/// `tuna samples JOB`: a task evaluation's graded answers (the job spec's `eval`), the base
/// model's next to the adapter's, from the job's `sample` events.
struct SamplesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "samples",
        abstract: "A job's graded answers (its spec's eval): each prompt, the reference, the base model's answer and the adapter's.")

    @Argument(help: "The job id.") var job: Int64
    @Option(help: "The adapter's answers at this step (default: the last step evaluated).") var step: Int?
    @Option(help: "Show at most this many prompts.") var limit: Int?
    @Flag(help: "Only prompts the adapter got wrong.") var wrong = false
    @Flag(help: "Print the sample events as JSON lines (every step, every attempt's latest).") var json = false
    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    }

    func run() async throws {
        let c = try await connection.connect()
        defer { c.close() }
        let attempts = try await c.send(JobQuery(job: job)).job.attempts
        // (model, step, index) -> event; a later attempt's sample replaces an earlier one's
        var samples: [String: JSONValue] = [:]
        for attempt in stride(from: 1, through: max(attempts, 1), by: 1) {
            for r in try await c.send(LogsQuery(job: job, attempt: attempt)).rows where TrainerEvent.kind(of: r.event) == .sample {
                samples[Self.key(r.event)] = r.event
            }
        }
        guard !samples.isEmpty else { throw Failure("job \(job) has no samples (its spec has no eval, or it has not evaluated yet)") }
        let all = samples.values.sorted { Self.order($0) < Self.order($1) }
        if json {
            for e in all { print(e.canonicalJSON) }
            return
        }
        let base = all.filter { $0["model"]?.stringValue == "base" }
        let tuned = all.filter { $0["model"]?.stringValue == "adapter" }
        let chosen = step ?? tuned.compactMap { $0["step"]?.intValue }.max()
        let adapter = tuned.filter { $0["step"]?.intValue == chosen }
        if step != nil, adapter.isEmpty { throw Failure("job \(job) has no samples at step \(step!)") }
        let byIndex = Dictionary(grouping: base + adapter) { (e: JSONValue) in e["index"]?.intValue ?? -1 }
        var shown = 0
        for index in byIndex.keys.sorted() {
            let rows = byIndex[index]!
            let mine = rows.first { $0["model"]?.stringValue == "adapter" }
            if wrong, mine?["correct"]?.boolValue != false { continue }
            if let limit, shown >= limit { break }
            shown += 1
            let first = rows[0]
            print("#\(index + 1)  \(Self.clip(first["prompt"]?.stringValue ?? ""))")
            print("    reference   \(Self.clip(first["reference"]?.stringValue ?? ""))  (expected \(first["expected"]?.stringValue ?? "?"))")
            for e in rows.sorted(by: { Self.order($0) < Self.order($1) }) {
                let label = e["model"]?.stringValue == "base" ? "base" : "step \(e["step"]?.intValue ?? 0)"
                let verdict = e["correct"]?.boolValue == true ? "right" : "wrong"
                let text = e["final"]?.stringValue ?? e["text"]?.stringValue.map { "(no final channel) " + $0 } ?? "(no final channel)"
                print("    \(label.padding(toLength: 10, withPad: " ", startingAt: 0))  \(verdict)  answer \(e["answer"]?.stringValue ?? "-")  \(Self.clip(text))")
            }
        }
        func score(_ xs: [JSONValue]) -> String {
            let right = xs.filter { $0["correct"]?.boolValue == true }.count
            return "\(right)/\(xs.count) (\(String(format: "%.1f", xs.isEmpty ? 0 : 100 * Double(right) / Double(xs.count)))%)"
        }
        var summary: [String] = []
        if !base.isEmpty { summary.append("base \(score(base))") }
        if let chosen, !adapter.isEmpty { summary.append("step \(chosen) \(score(adapter))") }
        print("exact match: " + summary.joined(separator: ", "))
    }

    static func key(_ e: JSONValue) -> String {
        "\(e["model"]?.stringValue ?? "")/\(e["step"]?.intValue ?? 0)/\(e["index"]?.intValue ?? 0)"
    }

    /// Base first, then by step, then by prompt.
    static func order(_ e: JSONValue) -> (Int, Int, Int) {
        (e["model"]?.stringValue == "base" ? 0 : 1, e["step"]?.intValue ?? 0, e["index"]?.intValue ?? 0)
    }

    /// One line of at most 160 characters.
    static func clip(_ s: String) -> String {
        let line = s.replacingOccurrences(of: "\n", with: " ⏎ ")
        return line.count > 160 ? String(line.prefix(159)) + "…" : line
    }
}
