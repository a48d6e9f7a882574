import Foundation
import Yams

/// Reads YAML into a `JSONValue`, resolving scalars by YAML 1.2's core schema so that
/// `8` is an integer, `2e-4` a float, `true` a bool and `"8"` (quoted) a string.
public enum YAML {
    public static func parse(_ text: String) throws -> JSONValue {
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw TunaError.invalid("not valid YAML: \(error)")
        }
        guard let node else { return .null }
        return try convert(node, path: "")
    }

    private static func convert(_ node: Node, path: String) throws -> JSONValue {
        switch node {
        case .scalar(let scalar):
            return scalarValue(scalar)
        case .sequence(let seq):
            return .array(try seq.enumerated().map { try convert($1, path: "\(path)[\($0)]") })
        case .mapping(let map):
            var out: [String: JSONValue] = [:]
            for (k, v) in map {
                guard let key = k.string else {
                    throw TunaError.invalid("\(path.isEmpty ? "spec" : path): keys must be strings")
                }
                let sub = path.isEmpty ? key : "\(path).\(key)"
                if out[key] != nil { throw TunaError.invalid("\(sub): key appears twice") }
                out[key] = try convert(v, path: sub)
            }
            return .object(out)
        case .alias:
            throw TunaError.invalid("\(path): YAML aliases are not supported in specs")
        }
    }

    private static func scalarValue(_ scalar: Node.Scalar) -> JSONValue {
        // Quoted scalars are strings whatever they look like.
        if scalar.style == .singleQuoted || scalar.style == .doubleQuoted
            || scalar.style == .literal || scalar.style == .folded {
            return .string(scalar.string)
        }
        let s = scalar.string
        switch s {
        case "", "~", "null", "Null", "NULL": return .null
        case "true", "True", "TRUE": return .bool(true)
        case "false", "False", "FALSE": return .bool(false)
        default: break
        }
        if let i = Int(s) { return .int(i) }
        if s.range(of: #"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"#, options: .regularExpression) != nil,
           let d = Double(s) {
            return .number(d)
        }
        return .string(s)
    }
}
