// The search benchmark's replay (Benchmarks/search/README.md): sweeps over a learning-curve
// table made by real native-trainer runs (curves.csv), with simulated workers, so each method's
// decisions cost no training. The decisions come from the functions the coordinator calls
// (TPE.propose, EarlyStopping.promote/settle/judge/medianStop); the scheduling around them is
// the coordinator's (promoted jobs before new ones, oldest first; each attempt trains to its
// pause or its end). Time is training steps: a worker trains one step per unit.
//
//   swift run -c release SearchBench [--curves Benchmarks/search/curves.csv] [--seeds 20] [--workers 4] [--json out.json]
//
// For each method and seed: the compute (training steps, all workers together) spent until a
// configuration within 1% of the table's best final validation loss has trained to the end and
// so is known, and the best final validation loss known at each fraction of the grid's compute.
import Foundation
import TunaCore
import TunaRandom

// MARK: the table

struct Table {
    var keys: [String]
    var points: [[JSONValue]]            // config -> its swept values, in `keys` order
    var curves: [[Int: Double]]          // config -> step -> validation loss
    var maxStep: Int
    var evalEvery: Int
    var final: [Double] { curves.map { $0[maxStep]! } }

    init(csv path: String) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var lines = text.split(whereSeparator: \.isNewline).map(String.init)
        let header = splitCSV(lines.removeFirst())
        keys = Array(header[1..<(header.count - 2)])
        var points: [Int: [JSONValue]] = [:], curves: [Int: [Int: Double]] = [:]
        for line in lines where !line.isEmpty {
            let f = splitCSV(line)
            let c = Int(f[0])!
            points[c] = try f[1..<(f.count - 2)].map { try JSONValue.parse($0) }
            curves[c, default: [:]][Int(f[f.count - 2])!] = Double(f[f.count - 1])!
        }
        self.points = (0..<points.count).map { points[$0]! }
        self.curves = (0..<curves.count).map { curves[$0]! }
        maxStep = self.curves[0].keys.max()!
        let steps = self.curves[0].keys.sorted()
        evalEvery = steps[0]
    }

    /// The categorical axes of the table, for TPE.
    var axes: [SweepAxis] {
        keys.enumerated().map { k, key in
            var values: [JSONValue] = []
            for p in points where !values.contains(p[k]) { values.append(p[k]) }
            return SweepAxis(path: key.split(separator: ".").map(String.init), values: .grid(values))
        }
    }

    func config(of point: [JSONValue]) -> Int { points.firstIndex(of: point)! }
}

/// CSV fields, with double-quoted fields ("" inside them is a quote).
func splitCSV(_ line: String) -> [String] {
    var out: [String] = [], cur = "", quoted = false
    var chars = Array(line)[...]
    while let c = chars.popFirst() {
        if quoted {
            if c == "\"" { if chars.first == "\"" { cur.append("\""); chars.removeFirst() } else { quoted = false } } else { cur.append(c) }
        } else if c == "\"" { quoted = true } else if c == "," { out.append(cur); cur = "" } else { cur.append(c) }
    }
    out.append(cur)
    return out
}

// MARK: the simulation

/// One job of a replayed sweep: a configuration and how far it has trained.
struct Job {
    var config: Int
    var trained = 0
    var recorded: Set<Int> = []
    var values: [(step: Int, value: Double)] = []
}

/// What a method does at the points where a sweep decides.
protocol Method {
    var name: String { get }
    /// The next job to start or resume for an idle worker (an index into `jobs`, new ones appended), or nil.
    mutating func next(_ s: inout Sweep) -> Int?
    /// The step this attempt of `job` trains to (its pause, or the end).
    func target(_ s: Sweep, _ job: Int) -> Int
    /// At each eval of a running job: whether it goes on. Called after the value is recorded.
    mutating func evaluated(_ s: inout Sweep, _ job: Int, step: Int) -> Bool
    /// The attempt reached its target: paused or finished.
    mutating func reached(_ s: inout Sweep, _ job: Int)
    /// Nothing runs and `next` has nothing: the sweep's end (ASHA settles). Whether work was queued.
    mutating func idle(_ s: inout Sweep) -> Bool
}

struct Sweep {
    let table: Table
    var jobs: [Job] = []
    var queue: [Int] = []        // jobs waiting to resume (promoted), by job id
    var finished: [Int] = []     // jobs trained to the end, in the order they finished
    var spent = 0                // training steps, all workers
    var bestKnown = Double.infinity
    var log: [(spent: Int, best: Double)] = []
    var objective = Objective.default

    init(table: Table) { self.table = table }
}

struct Result: Encodable {
    var method: String
    var seed: Int
    var stepsToFind: Int?         // nil: not found within the grid's compute
    var bestAt: [Double?]         // best known final validation loss at each budget fraction (nil: none yet)
}

let budgets = [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0]

/// Runs a method with `workers` workers until the grid's compute is spent or nothing is left.
func replay<M: Method>(_ method: M, table: Table, workers: Int, seed: Int) -> Result {
    var m = method
    var s = Sweep(table: table)
    let grid = table.curves.count * table.maxStep
    let target = table.final.min()! * 1.01
    var found: Int?
    // A running attempt: the job, the step it started from, its target, the time it started and
    // the last step whose eval was handled (events are at evals, not at every step trained:
    // several attempts may reach an eval at the same time, and each is handled).
    var running: [(job: Int, from: Int, to: Int, start: Int, evaluated: Int)?] = Array(repeating: nil, count: workers)
    var time = 0
    // Nothing new starts once the grid's compute is spent; what runs then finishes.
    func start(_ w: Int) {
        guard s.spent < grid, let j = m.next(&s) else { running[w] = nil; return }
        running[w] = (j, s.jobs[j].trained, m.target(s, j), time, s.jobs[j].trained)
    }
    for w in 0..<workers { start(w) }
    while true {
        // The next event: the earliest eval (every `evalEvery` steps) of any running attempt.
        var best: (w: Int, t: Int)?
        for (w, r) in running.enumerated() {
            guard let r else { continue }
            let nextStep = min(r.to, (r.evaluated / table.evalEvery + 1) * table.evalEvery)
            let t = r.start + (nextStep - r.from)
            if best == nil || t < best!.t { best = (w, t) }
        }
        guard let (w, t) = best else { break }
        // Every running attempt trained until t.
        for (v, r) in running.enumerated() {
            guard let r else { continue }
            let now = r.from + (t - r.start)
            s.spent += now - s.jobs[r.job].trained
            s.jobs[r.job].trained = now
            _ = v
        }
        time = t
        var r = running[w]!
        let step = min(r.to, (r.evaluated / table.evalEvery + 1) * table.evalEvery)
        r.evaluated = step
        running[w] = r
        let value = table.curves[s.jobs[r.job].config][step]!
        s.jobs[r.job].values.append((step, value))
        var goesOn = m.evaluated(&s, r.job, step: step)
        if step == table.maxStep {
            s.finished.append(r.job)
            s.bestKnown = min(s.bestKnown, value)
            s.log.append((s.spent, s.bestKnown))
            if found == nil && value <= target && s.spent <= grid { found = s.spent }
            goesOn = false
        }
        if step == r.to || !goesOn {
            if step == r.to { m.reached(&s, r.job) }
            running[w] = nil
        }
        // Decisions may have stopped other attempts (stopping mode, median).
        for v in running.indices { if let o = running[v], m.isStopped(s, o.job) { running[v] = nil } }
        for v in running.indices where running[v] == nil { start(v) }
        if running.allSatisfy({ $0 == nil }) {
            guard s.spent < grid, m.idle(&s) else { break }
            for v in running.indices { start(v) }
        }
    }
    let bestAt = budgets.map { b in s.log.last { Double($0.spent) <= b * Double(grid) }?.best }
    return Result(method: m.name, seed: seed, stepsToFind: found, bestAt: bestAt)
}

extension Method {
    func isStopped(_ s: Sweep, _ job: Int) -> Bool { false }
    mutating func idle(_ s: inout Sweep) -> Bool { false }
}

// MARK: methods

/// Every configuration to the end, in `order`.
struct FullRuns: Method {
    var name: String
    var order: [Int]
    var nextConfig = 0
    mutating func next(_ s: inout Sweep) -> Int? {
        guard nextConfig < order.count else { return nil }
        s.jobs.append(Job(config: order[nextConfig])); nextConfig += 1
        return s.jobs.count - 1
    }
    func target(_ s: Sweep, _ job: Int) -> Int { s.table.maxStep }
    mutating func evaluated(_ s: inout Sweep, _ job: Int, step: Int) -> Bool { true }
    mutating func reached(_ s: inout Sweep, _ job: Int) {}
}

/// TPE (the coordinator's: TPE.propose), each job to the end; running jobs count as bad.
struct TPESearch: Method {
    var name = "tpe (Tuna)"
    var seed: UInt64
    var startup = TPE.defaultStartup
    var draws: [Int]
    mutating func next(_ s: inout Sweep) -> Int? {
        let index = s.jobs.count
        var config = draws[index % draws.count]
        if index >= startup {
            let observations = s.jobs.map { j in
                TPE.Observation(point: s.table.points[j.config], value: j.trained == s.table.maxStep ? s.table.final[j.config] : nil)
            }
            if let p = TPE.propose(axes: s.table.axes, observations: observations, objective: s.objective,
                                   startup: startup, seed: seed, index: index) { config = s.table.config(of: p) }
        }
        s.jobs.append(Job(config: config))
        return index
    }
    func target(_ s: Sweep, _ job: Int) -> Int { s.table.maxStep }
    mutating func evaluated(_ s: inout Sweep, _ job: Int, step: Int) -> Bool { true }
    mutating func reached(_ s: inout Sweep, _ job: Int) {}
}

/// ASHA in promotion mode (EarlyStopping.promote and .settle), configurations in `order`.
struct ASHAPromotion: Method {
    var name: String
    var rule: EarlyStopping
    var order: [Int]
    var nextConfig = 0
    var paused: [EarlyStopping.Paused] = []
    var rungValues: [[Int]: [(job: JobID, value: Double)]] = [:]

    func bracket(_ job: Int) -> Int { rule.bracket(ofIndex: job) }

    mutating func next(_ s: inout Sweep) -> Int? {
        if !s.queue.isEmpty { return s.queue.removeFirst() }
        if nextConfig < order.count {
            s.jobs.append(Job(config: order[nextConfig])); nextConfig += 1
            return s.jobs.count - 1
        }
        return nil
    }
    func target(_ s: Sweep, _ job: Int) -> Int {
        rule.pauseAt(recorded: s.jobs[job].recorded, bracket: bracket(job)) ?? s.table.maxStep
    }
    mutating func evaluated(_ s: inout Sweep, _ job: Int, step: Int) -> Bool {
        for r in rule.recordedSteps(at: step, recorded: s.jobs[job].recorded, bracket: bracket(job)) {
            rungValues[[r, bracket(job)], default: []].append((JobID(job), s.jobs[job].values.last!.value))
            s.jobs[job].recorded.insert(r)
        }
        apply(&s, rule.promote(paused: paused, values: values, objective: s.objective))
        return true
    }
    func values(_ rung: Int, _ bracket: Int) -> [(job: JobID, value: Double)] { rungValues[[rung, bracket]] ?? [] }
    mutating func apply(_ s: inout Sweep, _ promoted: [EarlyStopping.Decision]) {
        for d in promoted {
            paused.removeAll { $0.job == d.job }
            s.queue.append(Int(d.job))
        }
        s.queue.sort()
    }
    mutating func reached(_ s: inout Sweep, _ job: Int) {
        if s.jobs[job].trained < s.table.maxStep {
            paused.append(.init(job: JobID(job), rung: s.jobs[job].trained, bracket: bracket(job)))
        }
        apply(&s, rule.promote(paused: paused, values: values, objective: s.objective))
    }
    /// Nothing runs and nothing is queued: drain or stop (EarlyStopping.settle).
    mutating func idle(_ s: inout Sweep) -> Bool {
        guard nextConfig >= order.count, !paused.isEmpty else { return false }
        let settled = rule.settle(paused: paused, values: values, objective: s.objective)
        apply(&s, settled.promoted)
        if settled.promoted.isEmpty { paused.removeAll() }
        return !settled.promoted.isEmpty
    }
}

/// ASHA in stopping mode and the median rule: jobs run to the end unless the rule stops them.
struct Stopping: Method {
    var name: String
    var rule: EarlyStopping
    var order: [Int]
    var nextConfig = 0
    var stopped: Set<Int> = []
    var rungValues: [[Int]: [(job: JobID, value: Double)]] = [:]

    mutating func next(_ s: inout Sweep) -> Int? {
        guard nextConfig < order.count else { return nil }
        s.jobs.append(Job(config: order[nextConfig])); nextConfig += 1
        return s.jobs.count - 1
    }
    func target(_ s: Sweep, _ job: Int) -> Int { s.table.maxStep }
    mutating func evaluated(_ s: inout Sweep, _ job: Int, step: Int) -> Bool {
        let value = s.jobs[job].values.last!.value
        switch rule.type {
        case .median:
            let completed = s.finished.map { s.jobs[$0].values }
            if rule.medianStop(step: step, job: s.jobs[job].values, completed: completed, objective: s.objective) != nil {
                stopped.insert(job)
            }
        case .asha:
            let b = rule.bracket(ofIndex: job)
            for r in rule.recordedSteps(at: step, recorded: s.jobs[job].recorded, bracket: b) {
                rungValues[[r, b], default: []].append((JobID(job), value))
                s.jobs[job].recorded.insert(r)
            }
            for r in s.jobs[job].recorded {
                for out in rule.judge(rungValues[[r, b]] ?? [], objective: s.objective).out { stopped.insert(Int(out)) }
            }
        }
        return !stopped.contains(job)
    }
    mutating func reached(_ s: inout Sweep, _ job: Int) {}
    func isStopped(_ s: Sweep, _ job: Int) -> Bool { stopped.contains(job) && s.jobs[job].trained < s.table.maxStep }
}

// MARK: main

let args = Array(CommandLine.arguments.dropFirst())
func option(_ name: String, _ fallback: String) -> String {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return fallback }
    return args[i + 1]
}
let curvesPath = option("--curves", "Benchmarks/search/curves.csv")
let seeds = Int(option("--seeds", "20"))!
let workers = Int(option("--workers", "4"))!
let table = try Table(csv: curvesPath)
let n = table.curves.count
let best = table.final.min()!
print("table: \(n) configurations x \(table.maxStep) steps, evals every \(table.evalEvery); best final val_loss \(String(format: "%.4f", best)); "
      + "\(table.final.filter { $0 <= best * 1.01 }.count) configurations within 1%; \(workers) workers")

func permutation(_ seed: Int) -> [Int] {
    var rng = SplitMix64(seed: UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 &+ 1)
    var order = Array(0..<n)
    for i in stride(from: n - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.below(UInt64(i + 1)))) }
    return order
}

let rungs = EarlyStopping(type: .asha, mode: .promotion, graceSteps: table.maxStep / 27, maxSteps: table.maxStep, reductionFactor: 3)
var results: [Result] = []
for seed in 0..<seeds {
    let order = permutation(seed)
    results.append(replay(FullRuns(name: "grid", order: Array(0..<n)), table: table, workers: workers, seed: seed))
    results.append(replay(FullRuns(name: "random", order: order), table: table, workers: workers, seed: seed))
    results.append(replay(TPESearch(seed: UInt64(seed), draws: order), table: table, workers: workers, seed: seed))
    results.append(replay(ASHAPromotion(name: "asha promotion", rule: rungs, order: order), table: table, workers: workers, seed: seed))
    var hyperband = rungs
    hyperband.brackets = 2
    results.append(replay(ASHAPromotion(name: "asha promotion, 2 brackets", rule: hyperband, order: order), table: table, workers: workers, seed: seed))
    var stopping = rungs
    stopping.mode = .stopping
    results.append(replay(Stopping(name: "asha stopping", rule: stopping, order: order), table: table, workers: workers, seed: seed))
    let median = EarlyStopping(type: .median, mode: .stopping, graceSteps: table.maxStep / 9, maxSteps: table.maxStep)
    results.append(replay(Stopping(name: "median", rule: median, order: order), table: table, workers: workers, seed: seed))
}
if let out = args.firstIndex(of: "--json").map({ args[$0 + 1] }) {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys]
    try e.encode(results).write(to: URL(fileURLWithPath: out))
}
let grid = n * table.maxStep
let methods = ["grid", "random", "tpe (Tuna)", "asha promotion", "asha promotion, 2 brackets", "asha stopping", "median"]
print("\ncompute to find a configuration within 1% of the best (training steps, % of the grid's \(grid)), over \(seeds) seeds:")
print("method | found | median | mean (not found: 100%)")
for name in methods {
    let rs = results.filter { $0.method == name }
    let pct = rs.map { 100 * Double($0.stepsToFind ?? grid) / Double(grid) }.sorted()
    let median = pct.count % 2 == 1 ? pct[pct.count / 2] : (pct[pct.count / 2 - 1] + pct[pct.count / 2]) / 2
    print(String(format: "%@ | %d/%d | %.1f%% | %.1f%%", name, rs.filter { $0.stepsToFind != nil }.count, rs.count, median, pct.reduce(0, +) / Double(pct.count)))
}
print("\nbest known final val_loss at each budget (fraction of the grid's compute), mean over seeds:")
print("method | " + budgets.map { String(format: "%.0f%%", 100 * $0) }.joined(separator: " | "))
for name in methods {
    let rs = results.filter { $0.method == name }
    let cols = budgets.indices.map { b -> String in
        let known = rs.compactMap { $0.bestAt[b] }
        return known.count < rs.count ? "-" : String(format: "%.4f", known.reduce(0, +) / Double(known.count))
    }
    print("\(name) | " + cols.joined(separator: " | "))
}
