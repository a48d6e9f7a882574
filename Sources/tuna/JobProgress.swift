import Foundation
import TunaCore
import TunaWire

/// What `tuna watch` shows of a running job: its step of the total (the trainer's `config`
/// event), loss, tokens/s, time since its attempt started and the time left at its pace, kept
/// up to date from the events it has not seen yet (`logs` with `after_seq`).
struct JobProgress {
    var attempt = 0
    var lastSeq: Int64 = -1
    var startedMs: Int64 = 0
    var lastAtMs: Int64 = 0
    var total: Int?
    var startStep = 0
    var step = 0
    var loss: Double?
    var tokensPerS: Double?

    /// Reads the job's new events (a new attempt starts over).
    mutating func update(_ c: WireClient, job: ResultRow) async throws {
        if job.attempts != attempt {
            self = JobProgress()
            attempt = job.attempts
            startedMs = try await c.send(JobQuery(job: job.id)).attempts.first { $0.attempt == job.attempts }?.started_ms ?? 0
        }
        for r in try await c.send(LogsQuery(job: job.id, attempt: attempt, afterSeq: lastSeq)).rows {
            lastSeq = max(lastSeq, r.seq)
            lastAtMs = max(lastAtMs, r.at_ms)
            switch r.event["event"]?.stringValue {
            case "config": total = r.event["steps"]?.intValue
            case "resumed": startStep = r.event["step"]?.intValue ?? 0; step = startStep
            case "step":
                step = r.event["step"]?.intValue ?? step
                loss = r.event["loss"]?.doubleValue ?? loss
                tokensPerS = r.event["tokens_per_s"]?.doubleValue ?? tokensPerS
            default: break
            }
        }
    }

    /// One line: `job 5  [██████░░░░░░░░░░░░░░]  37/100  loss 1.234  1234 tok/s  0:42  ETA 1:12  lr=0.001`.
    func line(_ job: ResultRow, varying: [String]) -> String {
        let width = 20
        var bar = "", count = "\(step)"
        if let total, total > 0 {
            let filled = min(width, width * step / total)
            bar = "[" + String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled) + "]  "
            count = "\(step)/\(total)"
        }
        let elapsed = max(0, Double(lastAtMs - startedMs) / 1000)
        var eta = ""
        if let total, step > startStep, step < total, elapsed > 0 {
            eta = "  ETA " + Self.duration(elapsed / Double(step - startStep) * Double(total - step))
        }
        let what = varying.compactMap { k in job.params[k].map { "\(k)=\($0.stringValue ?? $0.canonicalJSON)" } }.joined(separator: " ")
        return "  job \(job.id)  \(bar)\(count)" + (loss.map { "  loss \(fmt($0))" } ?? "")
            + (tokensPerS.map { "  \(Int($0)) tok/s" } ?? "") + "  \(Self.duration(elapsed))\(eta)" + (what.isEmpty ? "" : "  \(what)")
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%d:%02d", t / 60, t % 60)
    }
}
