import Foundation

/// A job's curves, as the trackers take them: one series of (step, value, time) per tag, read
/// from the trainer events the coordinator stored (docs/trainer-contract.md §4). Shared by the
/// TensorBoard and MLflow exports, so both show the same numbers.
///
/// Tags: `train/loss`, `train/lr`, `train/grad_norm`, `train/tokens_per_s` from `step` events;
/// `eval/<field>` for every number of an `eval` event but its step, epoch and token count
/// (`eval/loss` for a validation loss); `eval/baseline_loss` from `baseline` (step 0).
/// A job that ran in several attempts (resumed after a failure, paused and promoted) has one
/// curve: where attempts reported the same step, the later attempt's value is kept (it is the
/// run the job's result came from).
public struct Curves: Sendable, Equatable {
    public struct Point: Sendable, Equatable {
        public var step: Int
        public var value: Double
        public var atMs: Int64
    }

    /// The series, each ordered by step.
    public private(set) var series: [String: [Point]] = [:]

    static let trainFields = ["loss", "lr", "grad_norm", "tokens_per_s"]
    static let evalSkipped: Set<String> = ["event", "step", "epoch", "tokens"]

    public init(events: [EventRow]) {
        var byTag: [String: [Int: (attempt: Int, point: Point)]] = [:]
        func add(_ tag: String, _ step: Int, _ value: Double, _ row: EventRow) {
            guard value.isFinite else { return }
            if let old = byTag[tag]?[step], old.attempt > row.attempt { return }
            byTag[tag, default: [:]][step] = (row.attempt, Point(step: step, value: value, atMs: row.at_ms))
        }
        for row in events {
            guard case .object(let e) = row.event, let kind = e["event"]?.stringValue else { continue }
            switch kind {
            case "step":
                guard let step = e["step"]?.intValue else { continue }
                for f in Self.trainFields { if let v = e[f]?.doubleValue { add("train/\(f)", step, v, row) } }
            case "eval":
                guard let step = e["step"]?.intValue else { continue }
                for (k, v) in e where !Self.evalSkipped.contains(k) { if let v = v.doubleValue { add("eval/\(k)", step, v, row) } }
            case "baseline":
                if let v = e["loss"]?.doubleValue { add("eval/baseline_loss", e["step"]?.intValue ?? 0, v, row) }
            default:
                continue
            }
        }
        series = byTag.mapValues { $0.values.map(\.point).sorted { $0.step < $1.step } }
    }

    public var tags: [String] { series.keys.sorted() }
}
