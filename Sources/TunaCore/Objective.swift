import Foundation

/// What a sweep optimises (`objective: {metric: val_loss, mode: min}` in its spec): a number its
/// trainers report in their eval events, and whether lower or higher is better. A job's value
/// is the metric at its last eval, the one its adapter was saved after.
public struct Objective: Codable, Sendable, Equatable {
    public enum Mode: String, Codable, Sendable, CaseIterable { case min, max }

    /// `val_loss` (an eval event's `loss`) or the name of another field of the eval events
    /// (`kl`, `top1_agreement`, a command trainer's own).
    public var metric: String
    public var mode: Mode

    public init(metric: String, mode: Mode) { self.metric = metric; self.mode = mode }

    /// Validation loss, lower is better: what a spec without `objective` optimises.
    public static let `default` = Objective(metric: "val_loss", mode: .min)

    /// Eval fields that are positions or sizes, not results (`Store.evalMetrics` keeps the rest).
    public static let notMetrics: Set<String> = ["event", "step", "epoch", "loss", "tokens", "keep", "graded"]

    /// Reads the spec's `objective` section (nil or absent: the default). Throws
    /// `TunaError.invalidSpec` naming each problem.
    public init(spec v: JSONValue?) throws {
        self = .default
        guard let v, v != .null else { return }
        guard let o = v.objectValue else {
            throw TunaError.invalidSpec(["objective: expected a mapping {metric, mode}, got \(v)"])
        }
        var problems: [String] = []
        for k in o.keys.sorted() where k != "metric" && k != "mode" {
            problems.append("objective.\(k): unknown field (expected metric, mode)")
        }
        if let m = o["metric"] {
            if let name = m.stringValue, Objective.isMetricName(name) { metric = name }
            else { problems.append("objective.metric: \(m) is not val_loss or the name of an eval field (letters, digits, '_'; not \(Objective.notMetrics.sorted().joined(separator: ", ")))") }
        }
        if let m = o["mode"] {
            if let s = m.stringValue, let parsed = Mode(rawValue: s) { mode = parsed }
            else { problems.append("objective.mode: \(m) is not min or max") }
        } else if metric != "val_loss" && problems.isEmpty {
            // Lower is better for a loss; for any other metric nobody should have to guess.
            problems.append("objective.mode: required with a metric other than val_loss (min or max)")
        }
        if !problems.isEmpty { throw TunaError.invalidSpec(problems) }
    }

    /// `val_loss`, or a field name safe to use in a JSON path: lowercase letters, digits and
    /// '_', starting with a letter, at most 64, and not one of `notMetrics`.
    public static func isMetricName(_ s: String) -> Bool {
        if s == "val_loss" { return true }
        let u = Array(s.utf8)
        guard let first = u.first, (97...122).contains(first), u.count <= 64, !notMetrics.contains(s) else { return false }
        return u.allSatisfy { (97...122).contains($0) || (48...57).contains($0) || $0 == UInt8(ascii: "_") }
    }

    /// Whether `a` is better than `b`.
    public func better(_ a: Double, than b: Double) -> Bool { mode == .min ? a < b : a > b }
}
