import Crypto
import Foundation
import TunaRandom

/// One job of a sweep as expansion produced it: every field resolved and defaulted.
public struct ExpandedJob: Sendable, Equatable {
    /// Position in the sweep (0-based), stable for a given spec.
    public let index: Int
    /// The whole job spec (what the trainer receives), defaults filled in.
    public let spec: JobSpec
    /// `spec` as JSON (the validated form).
    public let params: JSONValue
    /// The swept fields and their values for this job, by dotted path.
    public let varying: [String: JSONValue]
    /// `params` as canonical JSON (sorted keys): what is hashed and what is stored.
    public let paramsJSON: String
    /// SHA-256 of `paramsJSON`: unique within a sweep.
    public let hash: String
}

/// A validated sweep, ready to store: `SweepSpec.plan` checks every job before it returns.
///
/// The jobs are not kept: `jobs[i]` expands job i again from the spec when asked (expansion is
/// deterministic), so a 1,000,000-job grid costs its axes' values, not a million job specs,
/// and the coordinator can store it in chunks while it answers other requests.
public struct SweepPlan: Sendable {
    public let name: String
    public let method: SweepMethod
    /// The dotted paths that vary across jobs (the columns of `tuna results`).
    public let varyingKeys: [String]
    /// The jobs, in order; each is expanded on access.
    public let jobs: SweepJobs
    /// What the sweep optimises (the default when the spec names none).
    public let objective: Objective
    /// `sweep.early_stopping`, if the spec has it.
    public let earlyStopping: EarlyStopping?
    /// TPE: how many results the sweep needs before it proposes (jobs before that, and every
    /// job while too few results are in, keep their random draw).
    public let startup: Int
    /// `sweep.max_steps_total`, with the length of each job it is counted in.
    public var budget: StepBudget? = nil
}

/// A sweep's step budget (`sweep.max_steps_total`): the training steps all its attempts together
/// may take, and how many steps one job trains (`train.max_steps`; for a command trainer, whose
/// steps Tuna cannot see, `sweep.early_stopping.max_steps`). The coordinator reserves each
/// attempt's steps when it leases it and never leases past the total (Store+Leases).
public struct StepBudget: Codable, Sendable, Equatable {
    public var total: Int
    public var jobSteps: Int
    enum CodingKeys: String, CodingKey { case total, jobSteps = "job_steps" }
    public init(total: Int, jobSteps: Int) { self.total = total; self.jobSteps = jobSteps }
}

/// The jobs of a plan as a collection: `count` is known, each element is expanded when read.
public struct SweepJobs: RandomAccessCollection, Sendable {
    let axes: [SweepAxis]
    let base: JSONValue
    let points: SweepPoints

    public var startIndex: Int { 0 }
    public var endIndex: Int { points.count }

    /// Job `i`, encoded and hashed. The plan validated every job, so this cannot fail.
    public subscript(i: Int) -> ExpandedJob {
        let c = checked(i)
        guard let job = c.spec else { preconditionFailure("job \(i) of a validated plan is invalid: \(c.problems)") }
        let params = job.json
        let json = params.canonicalJSON
        let hash = SHA256.hash(data: Data(json.utf8)).hex
        return ExpandedJob(index: i, spec: job, params: params, varying: c.varying, paramsJSON: json, hash: hash)
    }

    /// Job `i` validated, not yet encoded: all that checking a sweep needs.
    func checked(_ i: Int) -> (spec: JobSpec?, varying: [String: JSONValue], problems: [String]) {
        let point = points[i]
        var spec = base
        var varying: [String: JSONValue] = [:]
        varying.reserveCapacity(axes.count)
        for (axis, value) in zip(axes, point) {
            spec = spec.setting(axis.path[...], to: value)
            varying[axis.name] = value
        }
        if case .object(var o) = spec {
            for k in SweepSpec.sweepSections { o.removeValue(forKey: k) }
            spec = .object(o)
        }
        let checked = JobValidator.validate(spec)
        return (checked.spec, varying, checked.problems)
    }
}

/// Where each job's axis values come from: a grid is decoded from the job's index (no list
/// of points is built); random points are drawn once when the plan is made.
enum SweepPoints: Sendable {
    case grid([[JSONValue]], count: Int)
    case drawn([[JSONValue]])

    var count: Int {
        switch self {
        case .grid(_, let n): return n
        case .drawn(let p): return p.count
        }
    }

    /// The axis values of point `i`; for a grid the last axis varies fastest.
    subscript(i: Int) -> [JSONValue] {
        switch self {
        case .drawn(let p): return p[i]
        case .grid(let lists, _):
            var out = [JSONValue](repeating: .null, count: lists.count)
            var rest = i
            for k in lists.indices.reversed() {
                out[k] = lists[k][rest % lists[k].count]
                rest /= lists[k].count
            }
            return out
        }
    }
}

public enum SweepMethod: String, Sendable, Codable { case grid, random, tpe }

public enum SweepSpec {
    /// The most jobs one sweep may expand to; a typo like a 10-value grid on six fields
    /// should be refused, not stored.
    public static let maxJobs = 1_000_000

    /// Top-level sections that configure the sweep rather than its jobs: never axes, never
    /// passed to a job.
    public static let sweepSections: Set<String> = ["sweep", "objective"]

    /// Parses, expands and validates a YAML spec. Throws `TunaError.invalidSpec` listing
    /// every problem (field, value, what was expected) if any job is invalid.
    /// - Parameter extended: jobs added to a random or TPE sweep after it was submitted
    ///   (`tuna sweep extend`): drawing goes on past the spec's `count` (the first draws are the
    ///   same, so the stored jobs stay what they are).
    /// - Parameter stored: the spec of a sweep already stored (expanded again after a restart,
    ///   or extended): the submit-time rules of adaptive search (`checkSearch`) it was accepted
    ///   under are not applied again, so a rule added later never strands a stored sweep.
    public static func plan(yaml: String, extended: Int = 0, stored: Bool = false) throws -> SweepPlan {
        let root = try YAML.parse(yaml)
        guard case .object = root else {
            throw TunaError.invalidSpec(["spec: expected a mapping of fields (name, model, dataset, ...), got \(root)"])
        }
        return try plan(spec: root, extended: extended, stored: stored)
    }

    /// How many jobs a spec makes, without expanding or validating them (the CLI's progress
    /// display while the coordinator does both); nil when even that cannot be told.
    public static func jobCount(yaml: String) -> Int? {
        guard let root = try? YAML.parse(yaml), let search = try? SearchSettings(root["sweep"]),
              let axes = try? SweepAxis.discover(in: root).0 else { return nil }
        return search.method == .grid ? (try? gridPoints(axes))?.count : search.count
    }

    public static func plan(spec root: JSONValue, extended: Int = 0, stored: Bool = false) throws -> SweepPlan {
        var search = try SearchSettings(root["sweep"])
        if extended > 0 {
            guard search.method != .grid else { throw TunaError.invalidSpec(["sweep: a grid search has no more jobs to add; only random and TPE sweeps can be extended"]) }
            guard search.count + extended <= maxJobs else { throw TunaError.invalidSpec(["sweep.count: \(search.count) + \(extended) is more than \(maxJobs) jobs"]) }
            search.count += extended
        }
        let objective = try Objective(spec: root["objective"])
        let (axes, base) = try SweepAxis.discover(in: root)
        let points = try search.method == .grid ? gridPoints(axes) : .drawn(randomPoints(axes, search, base: base))
        let jobs = SweepJobs(axes: axes, base: base, points: points)
        try validate(jobs)
        if !stored { try checkSearch(search, axes: axes, first: jobs.isEmpty ? nil : jobs.checked(0).spec, objective: objective) }
        let name = root["name"]?.stringValue ?? ""
        var plan = SweepPlan(name: name, method: search.method, varyingKeys: axes.map(\.name), jobs: jobs, objective: objective,
                             earlyStopping: search.earlyStopping, startup: search.startup)
        if let total = search.maxStepsTotal {
            // Every job has the same length: `train.max_steps` may not be swept.
            let first = jobs.isEmpty ? nil : jobs.checked(0).spec
            let length = first?.trainer == .command ? search.earlyStopping?.maxSteps : first?.train.flatMap { $0.maxSteps > 0 ? $0.maxSteps : nil }
            guard let length, !axes.contains(where: { $0.name == "train.max_steps" }) else {
                throw TunaError.invalidSpec(["sweep.max_steps_total: needs the length of every job: set train.max_steps (one value, not swept)"
                                             + (first?.trainer == .command ? "; a command trainer's steps are its own: set sweep.early_stopping.max_steps" : "")])
            }
            plan.budget = StepBudget(total: total, jobSteps: length)
        }
        return plan
    }

    /// The fields a job is queued by (which workers may take it, in which order, how often):
    /// fixed when it is stored, so TPE, which picks a job's parameters when it is leased, may
    /// not search them.
    public static func isSchedulingField(_ axis: String) -> Bool {
        ["trainer", "priority", "max_attempts", "resources"].contains { axis == $0 || axis.hasPrefix($0 + ".") }
    }

    /// What adaptive search needs of a sweep's jobs, beyond each being valid.
    static func checkSearch(_ search: SearchSettings, axes: [SweepAxis], first: JobSpec?, objective: Objective = .default) throws {
        var problems: [String] = []
        if search.method == .tpe {
            for a in axes where isSchedulingField(a.name) {
                problems.append("\(a.name): TPE cannot search a job's trainer, resources, priority or max_attempts "
                                + "(they decide which worker takes the job, before TPE proposes its parameters); use grid or random search")
            }
        }
        if search.earlyStopping != nil {
            // Early stopping compares jobs by their evals on the same validation data.
            let splitFromTrain = first?.dataset?.valPath == nil
            for a in axes where ["dataset", "dataset.val_fraction", "dataset.val_path"].contains(a.name) || (splitFromTrain && a.name == "dataset.path") {
                problems.append("\(a.name): may not be swept with sweep.early_stopping: jobs are compared on the same validation data")
            }
            if let first, first.trainer != .command, first.task != .prune, let d = first.dataset, d.valFraction == 0, d.valPath == nil {
                problems.append("sweep.early_stopping: needs validation data to judge jobs by (dataset.val_fraction is 0 and there is no "
                                + "dataset.val_path): every job would stop at its first rung with no eval")
            }
            // A task evaluation's figures are in the last eval only, unless every eval has them:
            // a rung would have no value to judge a job by.
            if let first, first.trainer != .command, ["exact_match", "answered"].contains(objective.metric),
               first.eval?.everyEval != true {
                problems.append("objective.metric: \(objective.metric) with sweep.early_stopping needs eval.every_eval: true "
                                + "(otherwise only a job's last eval reports it, and no rung has a value)")
            }
        }
        if !problems.isEmpty { throw TunaError.invalidSpec(problems) }
    }

    /// What a TPE proposal needs from a stored sweep's spec, read again without expanding or
    /// validating its jobs (they were validated when it was submitted).
    public struct SearchSpace: Sendable {
        public let axes: [SweepAxis]
        let base: JSONValue
        public let method: SweepMethod
        public let startup: Int
        public let seed: UInt64
        public let objective: Objective

        /// Job `index` with the axis values `point`: its validated parameters (canonical JSON)
        /// and swept values, or the problems that make it invalid.
        public func job(_ point: [JSONValue]) -> (paramsJSON: String, hash: String, varying: [String: JSONValue])? {
            let c = SweepJobs(axes: axes, base: base, points: .drawn([point])).checked(0)
            guard let spec = c.spec else { return nil }
            let json = spec.json.canonicalJSON
            return (json, SHA256.hash(data: Data(json.utf8)).hex, c.varying)
        }
    }

    public static func searchSpace(yaml: String) throws -> SearchSpace {
        let root = try YAML.parse(yaml)
        let search = try SearchSettings(root["sweep"])
        let (axes, base) = try SweepAxis.discover(in: root)
        return SearchSpace(axes: axes, base: base, method: search.method, startup: search.startup, seed: search.seed,
                           objective: try Objective(spec: root["objective"]))
    }

    /// Checks every job once: each must be valid, and no two may have the same parameters.
    /// Lists each distinct problem once (at most 50). Duplicates are found by each validated
    /// spec's hash value, confirmed by comparing the two specs: exact, and no job is encoded
    /// (the parameters' JSON is a function of the spec, so equal specs are exactly the jobs
    /// that would store equal parameters). The jobs are checked on every core, in contiguous
    /// ranges; the duplicate search then runs over 16 bytes a job.
    static func validate(_ jobs: SweepJobs) throws {
        let parts = max(1, min(ProcessInfo.processInfo.activeProcessorCount, jobs.count / 10_000))
        let results = Results(parts)
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            results[p] = CheckedRange(jobs, jobs.count * p / parts..<jobs.count * (p + 1) / parts)
        }
        let checked = results.all
        var problems: [String] = []
        var seenProblems = Set<String>()
        for part in checked {
            for p in part.problems where seenProblems.insert(p).inserted { problems.append(p) }
        }
        var first: [Int: Int32] = [:]        // hash value → first job with it
        var collided: [Int: [Int32]] = [:]   // later jobs with an equal hash value but another spec
        first.reserveCapacity(jobs.count)
        for part in checked {
            for (h, i) in part.hashes where problems.count < 50 {
                guard let earlier = first[h] else { first[h] = i; continue }
                let spec = jobs.checked(Int(i)).spec
                if let same = ([earlier] + (collided[h] ?? [])).first(where: { jobs.checked(Int($0)).spec == spec }) {
                    let varying = jobs.checked(Int(i)).varying.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: ", ")
                    let p = "sweep: jobs \(same) and \(i) have identical parameters (\(varying))"
                    if seenProblems.insert(p).inserted { problems.append(p) }
                } else {
                    collided[h, default: []].append(i)
                }
            }
        }
        if !problems.isEmpty { throw TunaError.invalidSpec(Array(problems.prefix(50))) }
    }

    /// The ranges' results, each set by one thread.
    private final class Results: @unchecked Sendable {
        // @unchecked: every slot is written once, under the lock.
        private var slots: [CheckedRange?]
        private let lock = NSLock()
        init(_ n: Int) { slots = Array(repeating: nil, count: n) }
        subscript(i: Int) -> CheckedRange? {
            get { lock.withLock { slots[i] } }
            set { lock.withLock { slots[i] = newValue } }
        }
        var all: [CheckedRange] { lock.withLock { slots.map { $0! } } }
    }

    /// One range of jobs checked: the problems of the invalid ones (each once, at most 50),
    /// and the spec hash value of each valid one.
    private struct CheckedRange {
        var problems: [String] = []
        var hashes: [(Int, Int32)] = []

        init(_ jobs: SweepJobs, _ range: Range<Int>) {
            var seen = Set<String>()
            hashes.reserveCapacity(range.count)
            for i in range {
                let c = jobs.checked(i)
                if let spec = c.spec { hashes.append((spec.hashValue, Int32(i))); continue }
                // A job whose values were refused is not compared with others: that would only
                // add noise to the real message.
                for p in c.problems where seen.insert(p).inserted { problems.append(p) }
                if problems.count >= 50 { break }
            }
        }
    }

    // MARK: Grid

    static func gridPoints(_ axes: [SweepAxis]) throws -> SweepPoints {
        var lists: [[JSONValue]] = []
        var total = 1
        for axis in axes {
            guard case .grid(let values) = axis.values else {
                throw TunaError.invalidSpec(["\(axis.name): a distribution needs `sweep: {method: random, count: N}`; grid search takes lists"])
            }
            lists.append(values)
            total = total.multipliedReportingOverflow(by: values.count).partialValue
            if total > maxJobs {
                throw TunaError.invalidSpec(["sweep: the grid expands to more than \(maxJobs) jobs"])
            }
        }
        return .grid(lists, count: total)
    }

    // MARK: Random

    static func randomPoints(_ axes: [SweepAxis], _ s: SearchSettings, base: JSONValue) throws -> [[JSONValue]] {
        var rng = SplitMix64(seed: s.seed)
        var points: [[JSONValue]] = []
        var seen = Set<[JSONValue]>()
        // Categorical spaces can be smaller than `count`: draw until `count` distinct points or
        // give up with a clear message rather than storing duplicates.
        var draws = 0
        while points.count < s.count {
            draws += 1
            if draws > s.count * 100 + 1000 {
                throw TunaError.invalidSpec(["sweep.count: \(s.count) distinct jobs requested but the search space yielded only \(points.count); lower the count or widen the space"])
            }
            let p = axes.map { sample($0.values, &rng) }
            if seen.insert(p).inserted { points.append(p) }
        }
        return points
    }

    static func sample(_ v: SweepAxis.Values, _ rng: inout SplitMix64) -> JSONValue {
        switch v {
        case .grid(let items): return items[Int(rng.next() % UInt64(items.count))]
        case .uniform(let lo, let hi): return .number(lo + (hi - lo) * rng.nextUnit())
        case .logUniform(let lo, let hi): return .number(exp(log(lo) + (log(hi) - log(lo)) * rng.nextUnit()))
        case .intUniform(let lo, let hi): return .int(lo + Int(rng.next() % UInt64(hi - lo + 1)))
        }
    }
}

/// The `sweep:` section: how to search.
struct SearchSettings {
    var method: SweepMethod = .grid
    var count = 0
    var seed: UInt64 = 0
    var startup = TPE.defaultStartup
    var maxStepsTotal: Int?
    var earlyStopping: EarlyStopping?

    init(_ v: JSONValue?) throws {
        guard let v, v != .null else { return }
        guard let o = v.objectValue else { throw TunaError.invalidSpec(["sweep: expected a mapping {method, count, seed}, got \(v)"]) }
        var problems: [String] = []
        for k in o.keys.sorted() where !["method", "count", "seed", "startup", "early_stopping", "max_steps_total"].contains(k) {
            problems.append("sweep.\(k): unknown field (expected method, count, seed, startup, early_stopping, max_steps_total)")
        }
        if let b = o["max_steps_total"] {
            if let n = b.intValue, n >= 1 { maxStepsTotal = n } else { problems.append("sweep.max_steps_total: \(b) is not a positive integer") }
        }
        if let e = o["early_stopping"] { earlyStopping = EarlyStopping.parse(e, problems: &problems) }
        if let m = o["method"] {
            if let s = m.stringValue, let parsed = SweepMethod(rawValue: s) { method = parsed }
            else { problems.append("sweep.method: \(m) is not one of grid, random, tpe") }
        }
        if let c = o["count"] {
            if let n = c.intValue, n > 0, n <= SweepSpec.maxJobs { count = n }
            else { problems.append("sweep.count: \(c) is not a positive integer (at most \(SweepSpec.maxJobs))") }
        }
        if let s = o["seed"] {
            if let n = s.intValue, n >= 0 { seed = UInt64(n) } else { problems.append("sweep.seed: \(s) is not a non-negative integer") }
        }
        if method != .grid && count == 0 && o["count"] == nil {
            problems.append("sweep.count: \(method == .tpe ? "TPE" : "random") search needs a count (how many jobs to \(method == .tpe ? "run" : "draw"))")
        }
        if let k = o["startup"] {
            if method != .tpe { problems.append("sweep.startup: only TPE search takes a startup (the random jobs before it proposes)") }
            else if let n = k.intValue, n >= 1 { startup = n }
            else { problems.append("sweep.startup: \(k) is not a positive integer") }
        }
        let methodKnown = o["method"].map { $0.stringValue.flatMap(SweepMethod.init(rawValue:)) != nil } ?? true
        if method == .grid && methodKnown && o["count"] != nil { problems.append("sweep.count: only random and TPE search take a count") }
        if !problems.isEmpty { throw TunaError.invalidSpec(problems) }
    }
}
