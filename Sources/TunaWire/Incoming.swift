import Foundation
import TunaCore

/// One received message: its header, its JSON bytes, and the binary frame that followed it
/// when the header announced one (`bin`).
public struct Incoming: Sendable {
    public var header: Header
    public var json: Data
    public var binary: Data?

    public init(header: Header, json: Data, binary: Data?) { self.header = header; self.json = json; self.binary = binary }

    public var type: String { header.type }

    /// Decodes the payload, turning an `error` reply into a thrown `ErrorReply`.
    public func decode<P: Decodable>(_ t: P.Type) throws -> P {
        if header.type == "error" { throw try Envelope.decode(ErrorReply.self, from: json, message: "error") }
        return try Envelope.decode(t, from: json, message: header.type)
    }
}

/// Reassembles messages from frames: a JSON frame, plus the binary frame after it if announced.
public struct MessageAssembler {
    var waiting: (Header, Data)?

    public init() {}

    /// Feeds one frame; returns a whole message when one is complete.
    public mutating func feed(_ frame: Frame) throws -> Incoming? {
        switch frame {
        case .json(let data):
            if let w = waiting { throw ErrorReply(code: .badFrame, message: "`\(w.0.type)` announced \(w.0.bin ?? 0) binary bytes but a JSON frame came") }
            let header = try Envelope.header(data)
            if let n = header.bin {
                guard n >= 0 else { throw ErrorReply(code: .badMessage, message: "bin must be >= 0") }
                waiting = (header, data)
                return nil
            }
            return Incoming(header: header, json: data, binary: nil)
        case .binary(let bytes):
            guard let (header, data) = waiting else {
                throw ErrorReply(code: .badFrame, message: "a binary frame must follow a message that announces it")
            }
            waiting = nil
            guard bytes.count == header.bin else {
                throw ErrorReply(code: .badFrame, message: "`\(header.type)` announced \(header.bin ?? 0) bytes, got \(bytes.count)")
            }
            return Incoming(header: header, json: data, binary: bytes)
        }
    }
}

extension Incoming {
    /// The rows of a `results` reply (a JSON array in the binary frame that follows it).
    public func resultRows() throws -> [ResultRow] {
        _ = try decode(Count.self)
        guard let binary else { throw ErrorReply(code: .badMessage, message: "`results` came without its rows") }
        do { return try JSONDecoder().decode([ResultRow].self, from: binary) } catch {
            throw ErrorReply(code: .badMessage, message: "malformed result rows: \(error)")
        }
    }
}
