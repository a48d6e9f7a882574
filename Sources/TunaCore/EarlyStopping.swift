import Foundation

/// `sweep.early_stopping`: the rule that lets a sweep spend its steps on its promising jobs.
/// This type is the only place the rule is written, as pure functions of the recorded values:
/// the live scheduler (TunaStore) and the search benchmark's replay call the same functions.
/// docs/search.md says how each decides, with the paper it follows.
///
/// **asha** (asynchronous successive halving; Li et al., "A System for Massively Parallel
/// Hyperparameter Tuning", MLSys 2020). Rungs sit at `grace_steps · eta^(b+k)` training steps
/// below `max_steps` (eta = `reduction_factor`, b = the job's bracket: `brackets` > 1 is the
/// paper's asynchronous Hyperband, jobs dealt to brackets round robin by their index in the
/// sweep). A job's value at a rung is its first eval at or after the rung's step; a rung is
/// judged among the jobs of the same bracket that reached it, and only the best ⌊n / eta⌋ of
/// those n may go on.
///  - `promotion` (the default): a job trains to its next rung, checkpoints, and hands its
///    worker back (`paused`). A paused job is promoted (queued again, resuming from its
///    checkpoint, on any worker) as soon as it is among the best ⌊n / eta⌋ at its rung. When
///    the sweep has nothing else to run, the best ⌈n / eta⌉ paused at the highest rung go on
///    (so the best job trains to `max_steps`, however few jobs reached the top rung), and once
///    nothing qualifies even so, the paused jobs left are stopped.
///  - `stopping`: jobs train on; a running job outside the best at a rung it reached is
///    stopped. Unlike Ray's ASHA, which judges a job once, when it reaches the rung, and so
///    lets the first jobs through every rung (ray#4401), a rung is judged again each time a
///    job records there.
///
/// **median** (the median stopping rule; Golovin et al., "Google Vizier", KDD 2017): at each
/// eval from `grace_steps` on, a running job whose best value so far is worse than the median
/// of the running averages, up to the same step, of the sweep's completed jobs is stopped;
/// nothing is stopped before `min_completed` jobs have completed.
public struct EarlyStopping: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case asha, median }
    public enum Mode: String, Codable, Sendable { case promotion, stopping }

    public var type: Kind
    public var mode: Mode
    public var graceSteps: Int
    public var maxSteps: Int
    public var reductionFactor: Int
    public var brackets: Int
    /// median: completed jobs needed before the rule stops anything.
    public var minCompleted: Int

    enum CodingKeys: String, CodingKey {
        case type, mode, graceSteps = "grace_steps", maxSteps = "max_steps", reductionFactor = "reduction_factor", brackets
        case minCompleted = "min_completed"
    }

    public init(type: Kind = .asha, mode: Mode = .stopping, graceSteps: Int, maxSteps: Int, reductionFactor: Int = 3,
                brackets: Int = 1, minCompleted: Int = 5) {
        self.type = type; self.mode = mode; self.graceSteps = graceSteps; self.maxSteps = maxSteps
        self.reductionFactor = reductionFactor; self.brackets = brackets; self.minCompleted = minCompleted
    }

    /// Rules stored before brackets and the median rule decode with their defaults.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(type: try c.decode(Kind.self, forKey: .type), mode: try c.decode(Mode.self, forKey: .mode),
                  graceSteps: try c.decode(Int.self, forKey: .graceSteps), maxSteps: try c.decode(Int.self, forKey: .maxSteps),
                  reductionFactor: try c.decodeIfPresent(Int.self, forKey: .reductionFactor) ?? 3,
                  brackets: try c.decodeIfPresent(Int.self, forKey: .brackets) ?? 1,
                  minCompleted: try c.decodeIfPresent(Int.self, forKey: .minCompleted) ?? 5)
    }

    /// Whether jobs pause at rungs and wait to be promoted.
    public var promotes: Bool { type == .asha && mode == .promotion }

    /// Reads `sweep.early_stopping`; `problems` gets one line per problem (nil is returned then).
    static func parse(_ v: JSONValue, problems: inout [String]) -> EarlyStopping? {
        let path = "sweep.early_stopping"
        guard let o = v.objectValue else { problems.append("\(path): expected a mapping {type, mode, grace_steps, max_steps, ...}, got \(v)"); return nil }
        let before = problems.count
        let type: Kind
        switch o["type"]?.stringValue {
        case "asha"?: type = .asha
        case "median"?: type = .median
        default: problems.append("\(path).type: \(o["type"] ?? .null) is not asha or median"); return nil
        }
        let known: Set<String> = type == .asha
            ? ["type", "mode", "grace_steps", "max_steps", "reduction_factor", "brackets"]
            : ["type", "mode", "grace_steps", "max_steps", "min_completed"]
        for k in o.keys.sorted() where !known.contains(k) {
            problems.append("\(path).\(k): unknown field for \(type.rawValue) (expected \(known.sorted().joined(separator: ", ")))")
        }
        var mode: Mode = type == .asha ? .promotion : .stopping
        if let m = o["mode"] {
            switch (m.stringValue.flatMap(Mode.init(rawValue:)), type) {
            case (let parsed?, .asha): mode = parsed
            case (.stopping?, .median): break
            case (.promotion?, .median): problems.append("\(path).mode: the median rule only stops (mode: stopping)")
            default: problems.append("\(path).mode: \(m) is not promotion or stopping")
            }
        }
        func int(_ key: String, min: Int) -> Int? {
            guard let x = o[key] else { return nil }
            guard let i = x.intValue, i >= min else { problems.append("\(path).\(key): \(x) is not an integer >= \(min)"); return nil }
            return i
        }
        let grace = int("grace_steps", min: 1), maxSteps = int("max_steps", min: 2)
        let eta = int("reduction_factor", min: 2) ?? 3, brackets = int("brackets", min: 1) ?? 1
        let minCompleted = int("min_completed", min: 1) ?? 5
        if o["grace_steps"] == nil { problems.append("\(path).grace_steps: required (\(type == .asha ? "the first rung" : "the first step the rule judges"), in training steps)") }
        if o["max_steps"] == nil { problems.append("\(path).max_steps: required (the steps a job trains when it is never stopped)") }
        if let grace, let maxSteps, grace >= maxSteps { problems.append("\(path): grace_steps (\(grace)) must be below max_steps (\(maxSteps))") }
        guard problems.count == before, let grace, let maxSteps else { return nil }
        let rule = EarlyStopping(type: type, mode: mode, graceSteps: grace, maxSteps: maxSteps, reductionFactor: eta,
                                 brackets: brackets, minCompleted: minCompleted)
        if type == .asha, let empty = (0..<brackets).first(where: { rule.rungs(bracket: $0).isEmpty }) {
            problems.append("\(path).brackets: bracket \(empty) would start at step \(grace) x \(eta)^\(empty), not below max_steps (\(maxSteps)); use at most \(empty) brackets")
            return nil
        }
        return rule
    }

    // MARK: ASHA

    /// The rungs of bracket 0, in training steps.
    public var rungs: [Int] { rungs(bracket: 0) }

    /// The rungs of a bracket, in training steps: grace·eta^(bracket+k) below max_steps.
    public func rungs(bracket: Int) -> [Int] {
        guard type == .asha else { return [] }
        var out: [Int] = []
        var r = graceSteps
        for _ in 0..<bracket {
            let (next, overflow) = r.multipliedReportingOverflow(by: reductionFactor)
            if overflow { return [] }
            r = next
        }
        while r < maxSteps {
            out.append(r)
            let (next, overflow) = r.multipliedReportingOverflow(by: reductionFactor)
            if overflow { break }
            r = next
        }
        return out
    }

    /// The bracket of the job at `index` in its sweep: round robin.
    public func bracket(ofIndex index: Int) -> Int { type == .asha ? index % brackets : 0 }

    /// The steps at which an eval at `step` is recorded, given those already recorded: for
    /// asha the rungs it reaches, for median the eval's own step.
    public func recordedSteps(at step: Int, recorded: Set<Int>, bracket: Int = 0) -> [Int] {
        switch type {
        case .asha: return rungs(bracket: bracket).filter { $0 <= step && !recorded.contains($0) }
        case .median: return recorded.contains(step) ? [] : [step]
        }
    }

    /// The rungs a job reaches with an eval at `step`, given the rungs it has already recorded.
    public func rungsReached(at step: Int, recorded: Set<Int>, bracket: Int = 0) -> [Int] {
        type == .asha ? recordedSteps(at: step, recorded: recorded, bracket: bracket) : []
    }

    /// Where the next attempt of a job that recorded `recorded` is to pause (promotion mode):
    /// the first rung of its bracket above them; nil when it is to train to the end.
    public func pauseAt(recorded: Set<Int>, bracket: Int) -> Int? {
        guard promotes else { return nil }
        let reached = recorded.max() ?? 0
        return rungs(bracket: bracket).first { $0 > reached }
    }

    /// One rung judged: how many of the `count` jobs recorded there may go on, the worst value
    /// among those (the cut), and the jobs outside them.
    public struct Judgement: Equatable, Sendable {
        public var count: Int
        public var keep: Int
        public var cut: Double?
        public var out: [JobID]
        /// The jobs that may go on, best first.
        public var kept: [JobID] = []
    }

    /// Judges one rung from its recorded values: the best ⌊n/eta⌋ (by the objective; equal
    /// values by the lower job id) go on, the others are out. While fewer than eta jobs have
    /// recorded, nobody is out (there is no top 1/eta of fewer than eta).
    public func judge(_ values: [(job: JobID, value: Double)], objective: Objective) -> Judgement {
        let ranked = values.sorted { a, b in a.value == b.value ? a.job < b.job : objective.better(a.value, than: b.value) }
        let keep = ranked.count / reductionFactor
        guard keep > 0 else { return Judgement(count: ranked.count, keep: ranked.count, cut: nil, out: []) }
        return Judgement(count: ranked.count, keep: keep, cut: ranked[keep - 1].value, out: ranked[keep...].map(\.job),
                         kept: ranked[..<keep].map(\.job))
    }

    /// Promotion mode at one rung: of the jobs paused there, those among the best ⌊n/eta⌋ of
    /// all n recorded at it, best first. Nobody is promoted while fewer than eta have recorded.
    ///
    /// `draining`: the sweep has nothing else to run, so the best ⌈n/eta⌉ go on (at least one).
    /// Without it a sweep of few jobs would end with nobody trained to `max_steps` (one job
    /// alone at the top rung is never in the top ⌊1/eta⌋); the scheduler drains the highest
    /// rung first, one rung at a time, so the jobs it promotes are judged again on the way up.
    public func promotions(_ values: [(job: JobID, value: Double)], paused: Set<JobID>, objective: Objective,
                           draining: Bool = false) -> (judgement: Judgement, promoted: [JobID]) {
        var j = judge(values, objective: objective)
        if draining, !values.isEmpty {
            let ranked = values.sorted { a, b in a.value == b.value ? a.job < b.job : objective.better(a.value, than: b.value) }
            let keep = (ranked.count + reductionFactor - 1) / reductionFactor
            j = Judgement(count: ranked.count, keep: keep, cut: ranked[keep - 1].value, out: ranked[keep...].map(\.job),
                          kept: ranked[..<keep].map(\.job))
        }
        guard j.cut != nil else { return (j, []) }
        return (j, j.kept.filter(paused.contains))
    }

    /// A job paused at a rung, waiting (promotion mode).
    public struct Paused: Sendable, Equatable {
        public var job: JobID, rung: Int, bracket: Int
        public init(job: JobID, rung: Int, bracket: Int) { self.job = job; self.rung = rung; self.bracket = bracket }
    }

    /// A decision about a paused job: promoted (queued again) or stopped, and why.
    public struct Decision: Sendable, Equatable {
        public var job: JobID, rung: Int, reason: String
    }

    /// Promotion mode, over every paused job of a sweep: the promotions due now, highest rung
    /// first. `values(rung, bracket)` gives the values recorded at a rung. `draining` (the sweep
    /// has nothing else to run): the best ⌈n/eta⌉ of the highest rung that has any paused among
    /// them, and only that rung. The live scheduler and the search benchmark's replay call this.
    public func promote(paused: [Paused], values: (_ rung: Int, _ bracket: Int) throws -> [(job: JobID, value: Double)],
                        objective: Objective, draining: Bool = false) rethrows -> [Decision] {
        var out: [Decision] = []
        let groups = Dictionary(grouping: paused) { [$0.rung, $0.bracket] }
        for key in groups.keys.sorted(by: { ($0[0], $0[1]) > ($1[0], $1[1]) }) {
            let (rung, bracket) = (key[0], key[1])
            let recorded = try values(rung, bracket)
            let (judgement, promoted) = promotions(recorded, paused: Set(groups[key]!.map(\.job)), objective: objective, draining: draining)
            let byJob = Dictionary(uniqueKeysWithValues: recorded.map { ($0.job, $0.value) })
            for job in promoted {
                out.append(Decision(job: job, rung: rung,
                                    reason: explainPromotion(rung: rung, value: byJob[job]!, objective: objective, judgement: judgement, draining: draining)))
            }
            if draining && !promoted.isEmpty { break }
        }
        return out
    }

    /// A sweep with nothing queued or running: the promotions draining makes, or, when there are
    /// none, the paused jobs stopped, each with its rung's judgement.
    public func settle(paused: [Paused], values: (_ rung: Int, _ bracket: Int) throws -> [(job: JobID, value: Double)],
                       objective: Objective) rethrows -> (promoted: [Decision], stopped: [Decision]) {
        let promoted = try promote(paused: paused, values: values, objective: objective, draining: true)
        if !promoted.isEmpty { return (promoted, []) }
        let stopped = try paused.map { p -> Decision in
            let recorded = try values(p.rung, p.bracket)
            let mine = recorded.first { $0.job == p.job }?.value
            return Decision(job: p.job, rung: p.rung,
                            reason: explainNotPromoted(rung: p.rung, value: mine, objective: objective,
                                                       judgement: mine == nil ? nil : judge(recorded, objective: objective)))
        }
        return ([], stopped)
    }

    // MARK: median

    /// The median stopping rule at one eval: `job` holds the job's recorded (step, value)s up
    /// to and with this eval's `step`, `completed` each completed job's. Returns, when the rule
    /// stops the job, its best value, the median it is worse than and how many jobs made it.
    public func medianStop(step: Int, job: [(step: Int, value: Double)], completed: [[(step: Int, value: Double)]],
                           objective: Objective) -> (best: Double, median: Double, completed: Int)? {
        guard type == .median, step >= graceSteps, completed.count >= minCompleted else { return nil }
        let averages = completed.compactMap { curve -> Double? in
            let upTo = curve.filter { $0.step <= step }.map(\.value)
            return upTo.isEmpty ? nil : upTo.reduce(0, +) / Double(upTo.count)
        }.sorted()
        guard averages.count >= minCompleted else { return nil }
        let median = averages.count % 2 == 1 ? averages[averages.count / 2]
            : (averages[averages.count / 2 - 1] + averages[averages.count / 2]) / 2
        let mine = job.filter { $0.step <= step }.map(\.value)
        guard let best = mine.reduce(nil as Double?, { b, v in b.map { objective.better(v, than: $0) ? v : $0 } ?? v }) else { return nil }
        return objective.better(median, than: best) ? (best, median, averages.count) : nil
    }

    // MARK: the reasons stored with each decision

    static func format(_ v: Double) -> String { String(format: "%.4g", v) }

    /// Why a running job was stopped at a rung (asha, stopping mode).
    public func explain(step: Int, rung: Int, value: Double, objective: Objective, judgement: Judgement) -> String {
        "stopped at step \(step): \(objective.metric) \(Self.format(value)) not in the top 1/\(reductionFactor) of \(judgement.count) jobs at rung \(rung)"
            + (judgement.cut.map { " (cut \(Self.format($0)))" } ?? "")
    }

    /// Why a paused job was promoted.
    public func explainPromotion(rung: Int, value: Double, objective: Objective, judgement: Judgement, draining: Bool = false) -> String {
        "promoted at step \(rung): \(objective.metric) \(Self.format(value)) in the top 1/\(reductionFactor)\(draining ? " (rounded up)" : "") of \(judgement.count) jobs at rung \(rung)"
            + (judgement.cut.map { " (cut \(Self.format($0)))" } ?? "") + (draining ? "; the sweep has nothing else to run" : "")
    }

    /// Why a job paused.
    public func explainPause(step: Int, value: Double?, objective: Objective) -> String {
        "paused at step \(step)" + (value.map { ": \(objective.metric) \(Self.format($0)), waiting for the rung to be judged" }
            ?? ": no \(objective.metric) at this rung, so it cannot be promoted")
    }

    /// Why a paused job was stopped when its sweep had nothing left to run.
    public func explainNotPromoted(rung: Int, value: Double?, objective: Objective, judgement: Judgement?) -> String {
        guard let value, let judgement else {
            return "stopped at step \(rung): no \(objective.metric) at rung \(rung); the sweep has nothing left to run"
        }
        return "stopped at step \(rung): \(objective.metric) \(Self.format(value)) not in the top 1/\(reductionFactor) of \(judgement.count) jobs at rung \(rung)"
            + (judgement.cut.map { " (cut \(Self.format($0)))" } ?? "") + "; the sweep has nothing left to run"
    }

    /// Why the median rule stopped a running job.
    public func explainMedian(step: Int, best: Double, median: Double, completed: Int, objective: Objective) -> String {
        "stopped at step \(step): best \(objective.metric) \(Self.format(best)) worse than the median \(Self.format(median)) of the running averages of \(completed) completed jobs"
    }

    /// The objective's value in one eval event (`val_loss` is its `loss`), if it has one.
    public static func value(of event: JSONValue, objective: Objective) -> Double? {
        let v = event[objective.metric == "val_loss" ? "loss" : objective.metric]?.doubleValue
        return v.flatMap { $0.isFinite ? $0 : nil }
    }
}
