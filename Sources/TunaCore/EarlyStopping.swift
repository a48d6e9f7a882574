import Foundation

/// `sweep.early_stopping`: asynchronous successive halving (ASHA; Li et al., "A System for
/// Massively Parallel Hyperparameter Tuning", MLSys 2020) in stopping mode. Rungs sit at
/// `grace_steps · reduction_factor^k` training steps below `max_steps`; a job's objective at a
/// rung is its first eval at or after that step. At every rung only the best ⌊n / eta⌋ of the n
/// jobs that reached it may go on; a running job outside them is stopped (state `stopped`).
///
/// Unlike Ray's ASHA, which judges a job once, when it reaches the rung, and so lets the first
/// jobs through every rung (ray#4401), a rung is judged again each time a job records there:
/// a job that went on while too few had reached the rung is stopped as soon as enough have and
/// it is not among the best. docs/search.md describes the rule; this type is the only place it
/// is written, as pure functions of the recorded values (the live scheduler calls them).
public struct EarlyStopping: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case asha }
    public enum Mode: String, Codable, Sendable { case stopping }

    public var type: Kind
    public var mode: Mode
    public var graceSteps: Int
    public var maxSteps: Int
    public var reductionFactor: Int

    enum CodingKeys: String, CodingKey {
        case type, mode, graceSteps = "grace_steps", maxSteps = "max_steps", reductionFactor = "reduction_factor"
    }

    public init(type: Kind = .asha, mode: Mode = .stopping, graceSteps: Int, maxSteps: Int, reductionFactor: Int = 3) {
        self.type = type; self.mode = mode; self.graceSteps = graceSteps; self.maxSteps = maxSteps; self.reductionFactor = reductionFactor
    }

    /// Reads `sweep.early_stopping`; `problems` gets one line per problem (nil is returned then).
    static func parse(_ v: JSONValue, problems: inout [String]) -> EarlyStopping? {
        let path = "sweep.early_stopping"
        guard let o = v.objectValue else { problems.append("\(path): expected a mapping {type, mode, grace_steps, max_steps, reduction_factor}, got \(v)"); return nil }
        let before = problems.count
        let known: Set<String> = ["type", "mode", "grace_steps", "max_steps", "reduction_factor", "brackets"]
        for k in o.keys.sorted() where !known.contains(k) {
            problems.append("\(path).\(k): unknown field (expected \(known.sorted().joined(separator: ", ")))")
        }
        switch o["type"]?.stringValue {
        case "asha"?: break
        case "median"?: problems.append("\(path).type: median is not available yet; asha is")
        default: problems.append("\(path).type: \(o["type"] ?? .null) is not asha")
        }
        switch o["mode"]?.stringValue {
        case "stopping"?: break
        case "promotion"?: problems.append("\(path).mode: promotion (pausing jobs at a rung and resuming the best) is not available yet; say mode: stopping")
        default: problems.append("\(path).mode: \(o["mode"] ?? .null) is not stopping (required: promotion, the default to come, is not available yet)")
        }
        func int(_ key: String, min: Int) -> Int? {
            guard let x = o[key] else { return nil }
            guard let i = x.intValue, i >= min else { problems.append("\(path).\(key): \(x) is not an integer >= \(min)"); return nil }
            return i
        }
        let grace = int("grace_steps", min: 1), maxSteps = int("max_steps", min: 2), eta = int("reduction_factor", min: 2) ?? 3
        if o["grace_steps"] == nil { problems.append("\(path).grace_steps: required (the first rung, in training steps)") }
        if o["max_steps"] == nil { problems.append("\(path).max_steps: required (the steps a job trains when it is never stopped)") }
        if let grace, let maxSteps, grace >= maxSteps { problems.append("\(path): grace_steps (\(grace)) must be below max_steps (\(maxSteps))") }
        if let b = o["brackets"], b.intValue != 1 { problems.append("\(path).brackets: \(b): only 1 bracket is available yet") }
        guard problems.count == before, let grace, let maxSteps else { return nil }
        return EarlyStopping(graceSteps: grace, maxSteps: maxSteps, reductionFactor: eta)
    }

    /// The rungs, in training steps: grace·eta^k below max_steps.
    public var rungs: [Int] {
        var out: [Int] = []
        var r = graceSteps
        while r < maxSteps {
            out.append(r)
            let (next, overflow) = r.multipliedReportingOverflow(by: reductionFactor)
            if overflow { break }
            r = next
        }
        return out
    }

    /// The rungs a job reaches with an eval at `step`, given the rungs it has already recorded.
    public func rungsReached(at step: Int, recorded: Set<Int>) -> [Int] {
        rungs.filter { $0 <= step && !recorded.contains($0) }
    }

    /// One rung judged: how many of the `count` jobs recorded there may go on, the worst value
    /// among those (the cut), and the jobs outside them.
    public struct Judgement: Equatable, Sendable {
        public var count: Int
        public var keep: Int
        public var cut: Double?
        public var out: [JobID]
    }

    /// Judges one rung from its recorded values: the best ⌊n/eta⌋ (by the objective; equal
    /// values by the lower job id) go on, the others are out. While fewer than eta jobs have
    /// recorded, nobody is out (there is no top 1/eta of fewer than eta).
    public func judge(_ values: [(job: JobID, value: Double)], objective: Objective) -> Judgement {
        let ranked = values.sorted { a, b in a.value == b.value ? a.job < b.job : objective.better(a.value, than: b.value) }
        let keep = ranked.count / reductionFactor
        guard keep > 0 else { return Judgement(count: ranked.count, keep: ranked.count, cut: nil, out: []) }
        return Judgement(count: ranked.count, keep: keep, cut: ranked[keep - 1].value, out: ranked[keep...].map(\.job))
    }

    /// What `tuna jobs` says about a stopped job.
    public func explain(step: Int, rung: Int, value: Double, objective: Objective, judgement: Judgement) -> String {
        "stopped at step \(step): \(objective.metric) \(String(format: "%.4g", value)) not in the top 1/\(reductionFactor) of \(judgement.count) jobs at rung \(rung)"
            + (judgement.cut.map { " (cut \(String(format: "%.4g", $0)))" } ?? "")
    }

    /// The objective's value in one eval event (`val_loss` is its `loss`), if it has one.
    public static func value(of event: JSONValue, objective: Objective) -> Double? {
        let v = event[objective.metric == "val_loss" ? "loss" : objective.metric]?.doubleValue
        return v.flatMap { $0.isFinite ? $0 : nil }
    }
}
