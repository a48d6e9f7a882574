import Foundation

/// A JSON value with its type kept exact (JSONSerialization turns booleans into numbers,
/// which would let `true` pass as a number column).
enum JSONValue: Decodable, Equatable, Sendable {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([String: JSONValue])

    /// Tries the types in order of how common they are in data sets (strings first): each
    /// failed attempt costs a thrown error, which dominates the parse time otherwise.
    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let o = try? c.decode([String: JSONValue].self) { self = .object(o) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int.self) { self = .int(i) }
        else { self = .double(try c.decode(Double.self)) }
    }

    /// Name of the type, for error messages.
    var typeName: String {
        switch self {
        case .string: return "a string"
        case .int, .double: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        case .array: return "a list"
        case .object: return "an object"
        }
    }
}

/// JSON Lines: one JSON object per line. Lines are numbered from 1; a trailing newline at
/// the end of the file does not make an extra row, but a blank line inside the file is a row
/// (an empty one, which the loader drops and counts).
struct JSONLReader {
    struct Line {
        var number: Int
        /// nil for a blank (white-space only) line.
        var object: [String: JSONValue]?
    }

    let path: String

    static let maxDepth = 100

    static func nestsTooDeep(_ bytes: ArraySlice<UInt8>) -> Bool {
        var depth = 0, inString = false, escaped = false
        for b in bytes {
            if inString {
                if escaped { escaped = false } else if b == 0x5C { escaped = true } else if b == 0x22 { inString = false }
                continue
            }
            switch b {
            case 0x22: inString = true
            case 0x5B, 0x7B:
                depth += 1
                if depth > maxDepth { return true }
            case 0x5D, 0x7D: depth -= 1
            default: break
            }
        }
        return false
    }

    func parse(_ bytes: [UInt8]) throws(TextError) -> [Line] {
        var lines: [Line] = []
        let decoder = JSONDecoder()
        var start = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        var number = 0
        while start < bytes.count {
            number += 1
            var end = start
            while end < bytes.count, bytes[end] != 0x0A { end += 1 }
            let slice = bytes[start..<end]
            start = end + 1
            if slice.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) {
                lines.append(Line(number: number, object: nil))
                continue
            }
            let value: JSONValue
            // Foundation's scanner traps on some lines nested near its limit (511 `[`); TunaCore's
            // JSONValue.maxDepth has the story. No row of a data set nests this deep.
            if Self.nestsTooDeep(slice) {
                throw .malformedRow(path: path, line: number, reason: "invalid JSON (arrays and objects nested more than \(Self.maxDepth) deep)")
            }
            do {
                value = try decoder.decode(JSONValue.self, from: Data(slice))
            } catch {
                throw .malformedRow(path: path, line: number, reason: "invalid JSON (\(JSONLReader.describe(error)))")
            }
            guard case let .object(object) = value else {
                throw .malformedRow(path: path, line: number, reason: "expected a JSON object, found \(value.typeName)")
            }
            lines.append(Line(number: number, object: object))
        }
        return lines
    }

    /// A one-line summary of a decoding error (the default description is a page long).
    private static func describe(_ error: any Error) -> String {
        guard let decoding = error as? DecodingError else { return "\(error)" }
        switch decoding {
        case let .dataCorrupted(context):
            let underlying = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
            return underlying ?? context.debugDescription
        case let .typeMismatch(_, context), let .valueNotFound(_, context), let .keyNotFound(_, context):
            return context.debugDescription
        @unknown default:
            return "\(decoding)"
        }
    }
}
