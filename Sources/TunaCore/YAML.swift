import Foundation
import Yams

/// Reads YAML into a `JSONValue`, resolving scalars by YAML 1.2's core schema so that
/// `8` is an integer, `2e-4` a float, `true` a bool and `"8"` (quoted) a string.
///
/// A spec comes from whoever can reach the coordinator, so the reader refuses what could make
/// a small text expensive or ambiguous before anything is expanded: anchors (and so aliases,
/// which can only name an anchor: nine aliases a level, five levels deep, once cost 90 s of CPU
/// and 1 GB), merge keys, explicit tags, keys that are not strings, and texts, nesting or
/// scalars past `Limits`. Numbers too large for a 64-bit float are named as such.
public enum YAML {
    public enum Limits {
        /// A sweep spec is a page of YAML; a megabyte is far past any real one.
        public static let bytes = 1 << 20
        /// Nesting depth of mappings and lists.
        public static let depth = 32
        /// One scalar (a system prompt, a template) in bytes.
        public static let scalarBytes = 64 << 10
    }

    public static func parse(_ text: String) throws -> JSONValue {
        let size = text.utf8.count
        guard size <= Limits.bytes else {
            throw TunaError.invalid("spec: \(size) bytes; a spec may have at most \(Limits.bytes) (\(Limits.bytes >> 20) MiB)")
        }
        let parser: Parser, node: Node?
        do {
            parser = try Parser(yaml: text)
            node = try parser.singleRoot()
        } catch {
            throw TunaError.invalid("not valid YAML: \(error)")
        }
        guard let node else { return .null }
        // A node holds its anchor weakly and the parser holds the anchors: keep the parser alive
        // while walking, or every anchor reads as nil and an alias bomb is expanded after all.
        return try withExtendedLifetime(parser) { try convert(node, path: "", depth: 0) }
    }

    private static func convert(_ node: Node, path: String, depth: Int) throws -> JSONValue {
        let here = path.isEmpty ? "spec" : path
        // Checked before the node's contents are looked at: an anchored node is refused at its
        // definition, so no alias to it is ever walked.
        if let anchor = node.anchor {
            throw TunaError.invalid("\(here): YAML anchors and aliases (&\(anchor.rawValue), *\(anchor.rawValue)) are not allowed in specs; write the value out")
        }
        if let tag = explicitTag(node) {
            throw TunaError.invalid("\(here): YAML tags (\(tag)) are not allowed in specs")
        }
        guard depth <= Limits.depth else { throw TunaError.invalid("\(here): nested more than \(Limits.depth) levels deep") }
        switch node {
        case .scalar(let scalar):
            guard scalar.string.utf8.count <= Limits.scalarBytes else {
                throw TunaError.invalid("\(here): a value of \(scalar.string.utf8.count) bytes; at most \(Limits.scalarBytes)")
            }
            return try scalarValue(scalar, path: here)
        case .sequence(let seq):
            return .array(try seq.enumerated().map { try convert($1, path: "\(path)[\($0)]", depth: depth + 1) })
        case .mapping(let map):
            var out: [String: JSONValue] = [:]
            for (k, v) in map {
                if k.string == "<<" {
                    throw TunaError.invalid("\(path.isEmpty ? "<<" : "\(path).<<"): YAML merge keys are not allowed in specs; write the fields out")
                }
                // A key must be a string as written: `1: 2` or `true: x` would be stored under
                // "1" or "true", which no field is.
                guard case .scalar(let ks) = k, k.anchor == nil, explicitTag(k) == nil,
                      case .string(let key) = try scalarValue(ks, path: here) else {
                    throw TunaError.invalid("\(here): keys must be strings (got \(k.string.map { "`\($0)`" } ?? "a non-scalar key"))")
                }
                let sub = path.isEmpty ? key : "\(path).\(key)"
                if out[key] != nil { throw TunaError.invalid("\(sub): key appears twice") }
                out[key] = try convert(v, path: sub, depth: depth + 1)
            }
            return .object(out)
        case .alias(let alias):
            throw TunaError.invalid("\(here): YAML aliases (*\(alias.anchor.rawValue)) are not allowed in specs; write the value out")
        }
    }

    /// The tag written in the text, if any (`Node.tag` would give the resolved one, which every
    /// node has; a tag's description is its name, and an untagged node's is Tag.Name.implicit).
    private static func explicitTag(_ node: Node) -> String? {
        let tag: Tag
        switch node {
        case .scalar(let s): tag = s.tag
        case .mapping(let m): tag = m.tag
        case .sequence(let s): tag = s.tag
        case .alias: return nil
        }
        // Yams reports untagged scalars as `str` (libyaml's quoted_implicit); `!!str` written out
        // is as harmless, so only other tags are refused.
        let harmless: Set<String> = [Tag.Name.implicit.rawValue, Tag.Name.str.rawValue]
        return harmless.contains(tag.description) ? nil : tag.description
    }

    private static func scalarValue(_ scalar: Node.Scalar, path: String) throws -> JSONValue {
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
            guard d.isFinite else { throw TunaError.invalid("\(path): \(s) is out of range (a 64-bit float's largest is about 1.8e308)") }
            return .number(d)
        }
        return .string(s)
    }
}
