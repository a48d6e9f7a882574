import Foundation

/// One swept dimension of a spec: the dotted path it sits at and the values it may take.
///
/// How a field becomes an axis (docs/job-spec.md says the same to users):
/// - a plain list is a grid over its elements, except at fields whose value is itself a list
///   (`lora.target_modules`, `lora.target_parameters`, `prune.also_evaluate`, `command`), where
///   only a list of lists is;
/// - `{grid: [...]}` or `{choice: [...]}` is a grid over the listed values, at any field;
/// - `{uniform: [lo, hi]}`, `{log_uniform: [lo, hi]}`, `{int_uniform: [lo, hi]}` are
///   distributions, only meaningful with `sweep.method: random`;
/// - `{value: X}` is the literal X (to pass a list through to a `command` trainer unswept).
public struct SweepAxis: Sendable, Equatable {
    public enum Values: Sendable, Equatable {
        case grid([JSONValue])
        case uniform(Double, Double)
        case logUniform(Double, Double)
        case intUniform(Int, Int)
    }

    public let path: [String]
    public let values: Values

    public init(path: [String], values: Values) { self.path = path; self.values = values }

    public var name: String { path.joined(separator: ".") }
}

/// Fields whose value is a list; a plain list there is the value, not a grid.
/// (`prune.also_evaluate: [24, 16]` is one job evaluating both, as the field's doc says; as an
/// axis it would make two jobs whose `also_evaluate` is not a list.)
let listValuedFields: Set<String> = ["lora.target_modules", "lora.target_parameters", "prune.also_evaluate", "command"]

/// The keys that mark an object as an axis or a literal rather than a nested section.
let axisKeys: Set<String> = ["grid", "choice", "uniform", "log_uniform", "int_uniform", "value"]

extension SweepAxis {
    /// Finds every axis in a spec (except under `sweep`, which configures the search itself),
    /// in a stable order (sorted by path), and returns the spec with literals unwrapped.
    static func discover(in spec: JSONValue) throws -> (axes: [SweepAxis], base: JSONValue) {
        var axes: [SweepAxis] = []
        var problems: [String] = []
        let base = walk(spec, path: [], axes: &axes, problems: &problems)
        if !problems.isEmpty { throw TunaError.invalidSpec(problems) }
        return (axes.sorted { $0.name < $1.name }, base)
    }

    private static func walk(_ v: JSONValue, path: [String], axes: inout [SweepAxis],
                             problems: inout [String]) -> JSONValue {
        let name = path.joined(separator: ".")
        if path.count == 1, SweepSpec.sweepSections.contains(path[0]) { return v }
        switch v {
        case .array(let items):
            if listValuedFields.contains(name) {
                let allLists = !items.isEmpty && items.allSatisfy { $0.arrayValue != nil }
                if allLists { axes.append(SweepAxis(path: path, values: .grid(items))); return .null }
                return v
            }
            if items.isEmpty { problems.append("\(name): an empty list sweeps over nothing"); return v }
            axes.append(SweepAxis(path: path, values: .grid(items)))
            return .null
        case .object(let o):
            if o.count == 1, let key = o.keys.first, axisKeys.contains(key), let arg = o[key] {
                if key == "value" { return arg }
                if let values = axisValues(key: key, arg: arg, name: name, problems: &problems) {
                    axes.append(SweepAxis(path: path, values: values))
                }
                return .null
            }
            var out: [String: JSONValue] = [:]
            for (k, sub) in o { out[k] = walk(sub, path: path + [k], axes: &axes, problems: &problems) }
            return .object(out)
        default:
            return v
        }
    }

    private static func axisValues(key: String, arg: JSONValue, name: String,
                                   problems: inout [String]) -> Values? {
        switch key {
        case "grid", "choice":
            guard let items = arg.arrayValue, !items.isEmpty else {
                problems.append("\(name): {\(key): ...} needs a non-empty list, got \(arg)")
                return nil
            }
            return .grid(items)
        default:
            guard let pair = arg.arrayValue, pair.count == 2,
                  let lo = pair[0].doubleValue, let hi = pair[1].doubleValue, lo <= hi else {
                problems.append("\(name): {\(key): [low, high]} needs two numbers with low <= high, got \(arg)")
                return nil
            }
            switch key {
            case "log_uniform":
                guard lo > 0 else {
                    problems.append("\(name): log_uniform bounds must be positive, got \(arg)")
                    return nil
                }
                return .logUniform(lo, hi)
            case "int_uniform":
                guard let l = pair[0].intValue, let h = pair[1].intValue else {
                    problems.append("\(name): int_uniform bounds must be integers, got \(arg)")
                    return nil
                }
                return .intUniform(l, h)
            default:
                return .uniform(lo, hi)
            }
        }
    }
}

extension JSONValue {
    /// A copy with the value at `path` replaced (objects along the path are created).
    func setting(_ path: ArraySlice<String>, to value: JSONValue) -> JSONValue {
        guard let head = path.first else { return value }
        var o = objectValue ?? [:]
        o[head] = (o[head] ?? .null).setting(path.dropFirst(), to: value)
        return .object(o)
    }

    /// The value at a dotted path, if present.
    public func value(at path: [String]) -> JSONValue? {
        var cur: JSONValue? = self
        for p in path { cur = cur?[p] }
        return cur
    }
}
