import Foundation

/// A JSON document as a value: what sweep specs, job parameters and protocol payloads are made of.
///
/// Integers and floating-point numbers are kept apart (`int` vs `number`) so that a spec's
/// `rank: 8` stays an integer through expansion, hashing and storage, and a validation
/// message can say "8.5 is not a positive integer".
public enum JSONValue: Sendable, Hashable, CustomStringConvertible {
    case null
    case bool(Bool)
    case int(Int)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])
}

extension JSONValue {
    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var objectValue: [String: JSONValue]? { if case .object(let o) = self { return o }; return nil }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }

    /// An integer, also when written as a float with no fractional part (`2.0`).
    public var intValue: Int? {
        switch self {
        case .int(let i): return i
        case .number(let d) where d.rounded() == d && abs(d) < 9.0e15: return Int(d)
        default: return nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .number(let d): return d
        default: return nil
        }
    }

    /// The value as written in an error message: compact JSON.
    public var description: String { canonicalJSON }
}

// MARK: - Canonical encoding

extension JSONValue {
    /// Compact JSON with object keys sorted: the form parameter hashes are computed over, so
    /// two specs that differ only in key order or whitespace hash the same.
    public var canonicalJSON: String {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Sorted keys, one field per line, `indent` spaces a level (the files in contract/,
    /// which people read in review).
    public func pretty(indent: Int = 2, level: Int = 0) -> String {
        let pad = String(repeating: " ", count: indent * (level + 1)), end = String(repeating: " ", count: indent * level)
        switch self {
        case .array(let a) where !a.isEmpty && a.contains(where: { $0.arrayValue != nil || $0.objectValue != nil }):
            return "[\n" + a.map { pad + $0.pretty(indent: indent, level: level + 1) }.joined(separator: ",\n") + "\n\(end)]"
        case .object(let o) where !o.isEmpty:
            return "{\n" + o.keys.sorted().map { k in
                pad + JSONValue.string(k).canonicalJSON + ": " + o[k]!.pretty(indent: indent, level: level + 1)
            }.joined(separator: ",\n") + "\n\(end)}"
        case .array(let a):
            return "[" + a.map(\.canonicalJSON).joined(separator: ", ") + "]"
        default:
            return canonicalJSON
        }
    }

    /// Appends the canonical form as UTF-8 bytes (a million-job sweep writes a million specs:
    /// bytes, not String appends).
    public func write(to out: inout [UInt8]) {
        switch self {
        case .null: out += "null".utf8
        case .bool(let b): out += (b ? "true" : "false").utf8
        case .int(let i): out += String(i).utf8
        case .number(let d): out += JSONValue.format(d).utf8
        case .string(let s): JSONValue.writeString(s, to: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (i, v) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                v.write(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            for (i, k) in o.keys.sorted().enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.writeString(k, to: &out)
                out.append(UInt8(ascii: ":"))
                o[k]!.write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// Shortest round-tripping decimal; non-finite numbers have no JSON form and become null.
    /// Whole numbers below 10^15 keep one decimal (`16.0`), so they stay apart from integers.
    static func format(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        if d.rounded() == d && abs(d) < 1e15 {
            return d == 0 && d.sign == .minus ? "-0.0" : String(Int(d)) + ".0"
        }
        return "\(d)"
    }

    static func writeString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Most strings (every key) need no escape: copied whole.
        if !s.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            out.append(contentsOf: s.utf8)
            out.append(UInt8(ascii: "\""))
            return
        }
        for c in s.utf8 {
            switch c {
            case UInt8(ascii: "\""): out += #"\""#.utf8
            case UInt8(ascii: "\\"): out += #"\\"#.utf8
            case UInt8(ascii: "\n"): out += #"\n"#.utf8
            case UInt8(ascii: "\r"): out += #"\r"#.utf8
            case UInt8(ascii: "\t"): out += #"\t"#.utf8
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += #"\u00"#.utf8
                out.append(hex[Int(c >> 4)]); out.append(hex[Int(c & 15)])
            default: out.append(c)  // UTF-8 passes through as it is
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

// MARK: - Codable

extension JSONValue: Codable {
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else if let o = try? c.decode([String: JSONValue].self) { self = .object(o) }
        else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "not a JSON value")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .number(let d): if d.isFinite { try c.encode(d) } else { try c.encodeNil() }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}

// MARK: - Parsing

extension JSONValue {
    /// Parses JSON text (UTF-8 bytes).
    /// The deepest nesting of arrays and objects Tuna parses. Foundation's JSON scanner traps
    /// (kills the process instead of throwing) on some inputs nested near its own limit of 512,
    /// e.g. 511 `[` (found by the frame fuzzer, seed 1796337481): frames, trainer event lines and
    /// every other text `parse` reads are checked first. Nothing Tuna reads nests past a few levels.
    public static let maxDepth = 100

    /// Whether `data` opens more than `maxDepth` arrays or objects at once (outside strings).
    public static func nestsTooDeep(_ data: Data) -> Bool {
        var depth = 0, inString = false, escaped = false
        for b in data {
            if inString {
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch b {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > maxDepth { return true }
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
            default: break
            }
        }
        return false
    }

    public static func parse(_ data: Data) throws -> JSONValue {
        if nestsTooDeep(data) { throw TunaError.invalid("not valid JSON here: arrays and objects nested more than \(maxDepth) deep") }
        do { return try JSONDecoder().decode(JSONValue.self, from: data) }
        catch { throw TunaError.invalid("not valid JSON: \(JSONValue.shortReason(error))") }
    }

    public static func parse(_ text: String) throws -> JSONValue { try parse(Data(text.utf8)) }

    static func shortReason(_ error: Error) -> String {
        if case DecodingError.dataCorrupted(let ctx) = error {
            return (ctx.underlyingError.map { "\($0.localizedDescription)" }) ?? ctx.debugDescription
        }
        return "\(error)"
    }

    public var jsonData: Data { Data(canonicalJSON.utf8) }
}

// MARK: - Literals

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral {
    public init(stringLiteral s: String) { self = .string(s) }
    public init(integerLiteral i: Int) { self = .int(i) }
    public init(floatLiteral d: Double) { self = .number(d) }
    public init(booleanLiteral b: Bool) { self = .bool(b) }
    public init(arrayLiteral items: JSONValue...) { self = .array(items) }
    public init(dictionaryLiteral pairs: (String, JSONValue)...) { self = .object(Dictionary(pairs, uniquingKeysWith: { $1 })) }
    public init(nilLiteral: ()) { self = .null }
}
