import Foundation

/// The common header of every JSON frame: `type`, plus `id` on requests and `re` on replies.
public struct Header: Codable, Sendable {
    public var type: String
    public var id: Int64?
    public var re: Int64?
    /// Set when one binary frame of this many bytes follows this message.
    public var bin: Int?
    public init(type: String, id: Int64? = nil, re: Int64? = nil, bin: Int? = nil) {
        self.type = type; self.id = id; self.re = re; self.bin = bin
    }
}

/// Encodes and decodes messages: the payload's fields sit beside the header fields in one
/// flat JSON object (`{"type":"heartbeat","id":7,"leases":[...]}`), which keeps the wire
/// format readable in docs/protocol.md and in a packet capture.
public enum Envelope {
    private struct Flat<P: Encodable>: Encodable {
        let header: Header
        let payload: P
        func encode(to encoder: Encoder) throws {
            try header.encode(to: encoder)
            try payload.encode(to: encoder)
        }
    }

    public static func encode<P: Encodable>(_ type: String, id: Int64? = nil, re: Int64? = nil, bin: Int? = nil, _ payload: P) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Every payload is a struct of plain fields; encoding cannot fail.
        return (try? encoder.encode(Flat(header: Header(type: type, id: id, re: re, bin: bin), payload: payload))) ?? Data()
    }

    public static func header(_ data: Data) throws -> Header {
        // Checked before any decoder sees the frame (JSONValue.maxDepth says why).
        if JSONValue.nestsTooDeep(data) {
            throw ErrorReply(code: .badMessage, message: "a frame may nest arrays and objects at most \(JSONValue.maxDepth) deep")
        }
        do { return try JSONDecoder().decode(Header.self, from: data) } catch {
            throw ErrorReply(code: .badMessage, message: "a frame must be a JSON object with a string `type`: \(JSONValue.shortReason(error))")
        }
    }

    public static func decode<P: Decodable>(_ type: P.Type, from data: Data, message: String) throws -> P {
        do { return try JSONDecoder().decode(P.self, from: data) } catch {
            throw ErrorReply(code: .badMessage, message: "malformed `\(message)`: \(describe(error))")
        }
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let ctx):
            return "missing field `\((ctx.codingPath + [key]).map(\.stringValue).joined(separator: "."))`"
        case DecodingError.typeMismatch(let t, let ctx), DecodingError.valueNotFound(let t, let ctx):
            return "field `\(ctx.codingPath.map(\.stringValue).joined(separator: "."))` is not \(t)"
        case DecodingError.dataCorrupted(let ctx):
            return ctx.debugDescription
        default:
            return "\(error)"
        }
    }
}
