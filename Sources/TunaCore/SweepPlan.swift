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

/// A validated sweep, ready to store: the whole spec is checked before anything is kept.
public struct SweepPlan: Sendable {
    public let name: String
    public let method: SweepMethod
    /// The dotted paths that vary across jobs (the columns of `tuna results`).
    public let varyingKeys: [String]
    public let jobs: [ExpandedJob]
}

public enum SweepMethod: String, Sendable, Codable { case grid, random }

public enum SweepSpec {
    /// The most jobs one sweep may expand to; a typo like a 10-value grid on six fields
    /// should be refused, not stored.
    public static let maxJobs = 1_000_000

    /// Parses, expands and validates a YAML spec. Throws `TunaError.invalidSpec` listing
    /// every problem (field, value, what was expected) if any job is invalid.
    public static func plan(yaml: String) throws -> SweepPlan {
        let root = try YAML.parse(yaml)
        guard case .object = root else {
            throw TunaError.invalidSpec(["spec: expected a mapping of fields (name, model, dataset, ...), got \(root)"])
        }
        return try plan(spec: root)
    }

    public static func plan(spec root: JSONValue) throws -> SweepPlan {
        let search = try SearchSettings(root["sweep"])
        let (axes, base) = try SweepAxis.discover(in: root)
        let points = try search.method == .grid ? gridPoints(axes) : randomPoints(axes, search, base: base)

        var jobs: [ExpandedJob] = []
        jobs.reserveCapacity(points.count)
        var problems: [String] = []
        var seenProblems = Set<String>()
        var seenHashes: [String: Int] = [:]
        for (i, point) in points.enumerated() {
            var spec = base
            var varying: [String: JSONValue] = [:]
            for (axis, value) in zip(axes, point) {
                spec = spec.setting(axis.path[...], to: value)
                varying[axis.name] = value
            }
            if case .object(var o) = spec { o.removeValue(forKey: "sweep"); spec = .object(o) }
            let checked = JobValidator.validate(spec)
            for p in checked.problems where seenProblems.insert(p).inserted { problems.append(p) }
            // A job whose values were refused is not compared with others: that would only add
            // noise to the real message.
            guard let job = checked.spec else { continue }
            let params = job.json
            let json = params.canonicalJSON
            let hash = SHA256.hash(data: Data(json.utf8)).hex
            if let other = seenHashes[hash] {
                let p = "sweep: jobs \(other) and \(i) have identical parameters (\(varying.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: ", ")))"
                if seenProblems.insert(p).inserted { problems.append(p) }
            }
            seenHashes[hash] = i
            jobs.append(ExpandedJob(index: i, spec: job, params: params, varying: varying, paramsJSON: json, hash: hash))
        }
        if !problems.isEmpty { throw TunaError.invalidSpec(Array(problems.prefix(50))) }
        let name = root["name"]?.stringValue ?? ""
        return SweepPlan(name: name, method: search.method, varyingKeys: axes.map(\.name), jobs: jobs)
    }

    public static func paramsHash(_ params: JSONValue) -> String {
        SHA256.hash(data: Data(params.canonicalJSON.utf8)).hex
    }

    // MARK: Grid

    static func gridPoints(_ axes: [SweepAxis]) throws -> [[JSONValue]] {
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
        var points: [[JSONValue]] = [[]]
        for values in lists {
            points = points.flatMap { p in values.map { p + [$0] } }
        }
        return points
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

    init(_ v: JSONValue?) throws {
        guard let v, v != .null else { return }
        guard let o = v.objectValue else { throw TunaError.invalidSpec(["sweep: expected a mapping {method, count, seed}, got \(v)"]) }
        var problems: [String] = []
        for k in o.keys where !["method", "count", "seed"].contains(k) {
            problems.append("sweep.\(k): unknown field (expected method, count, seed)")
        }
        if let m = o["method"] {
            if let s = m.stringValue, let parsed = SweepMethod(rawValue: s) { method = parsed }
            else { problems.append("sweep.method: \(m) is not one of grid, random") }
        }
        if let c = o["count"] {
            if let n = c.intValue, n > 0, n <= SweepSpec.maxJobs { count = n }
            else { problems.append("sweep.count: \(c) is not a positive integer (at most \(SweepSpec.maxJobs))") }
        }
        if let s = o["seed"] {
            if let n = s.intValue, n >= 0 { seed = UInt64(n) } else { problems.append("sweep.seed: \(s) is not a non-negative integer") }
        }
        if method == .random && count == 0 && o["count"] == nil {
            problems.append("sweep.count: random search needs a count (how many jobs to draw)")
        }
        if method == .grid && o["count"] != nil { problems.append("sweep.count: only random search takes a count") }
        if !problems.isEmpty { throw TunaError.invalidSpec(problems) }
    }
}
