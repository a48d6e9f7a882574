import Foundation
import NIOConcurrencyHelpers
import NIOCore
import TunaCore

/// The largest frame a connection accepts now. The coordinator starts each connection at
/// `Frame.unauthenticatedMaxLength` and raises it after `hello` is accepted, so a peer that has
/// not authenticated cannot make it buffer more than that.
public final class FrameLimit: Sendable {
    private let bytes: NIOLockedValueBox<Int>
    public init(_ bytes: Int) { self.bytes = NIOLockedValueBox(bytes) }
    public var current: Int { bytes.withLockedValue { $0 } }
    public func raise(to n: Int) { bytes.withLockedValue { $0 = max($0, n) } }
}

/// Splits the byte stream into frames (`[u32 length][u8 kind][payload]`) and refuses, from
/// the length alone, a frame over the limit: a peer cannot make us buffer 4 GiB.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Frame
    public let limit: FrameLimit
    public var maxLength: Int { limit.current }

    public init(maxLength: Int = Frame.defaultMaxLength) { limit = FrameLimit(maxLength) }
    public init(limit: FrameLimit) { self.limit = limit }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        guard length >= 1 else { throw WireError.badFrame("empty frame") }
        let maxLength = self.maxLength
        guard Int(length) <= maxLength else {
            throw WireError.frameTooLarge(Int(length), maxLength)
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        let kind = buffer.readInteger(as: UInt8.self) ?? 0
        let payload = Data(buffer.readBytes(length: Int(length) - 1) ?? [])
        switch kind {
        case Frame.jsonKind: context.fireChannelRead(wrapInboundOut(.json(payload)))
        case Frame.binaryKind: context.fireChannelRead(wrapInboundOut(.binary(payload)))
        default: throw WireError.badFrame("unknown frame kind \(kind)")
        }
        return .continue
    }
}

public struct FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Frame
    public init() {}

    public func encode(data: Frame, out: inout ByteBuffer) throws {
        let (kind, payload): (UInt8, Data)
        switch data {
        case .json(let d): (kind, payload) = (Frame.jsonKind, d)
        case .binary(let d): (kind, payload) = (Frame.binaryKind, d)
        }
        out.reserveCapacity(5 + payload.count)
        out.writeInteger(UInt32(payload.count + 1))
        out.writeInteger(kind)
        out.writeBytes(payload)
    }
}

public enum WireError: Error, CustomStringConvertible, Sendable {
    case badFrame(String)
    case frameTooLarge(Int, Int)
    case closed
    /// No reply within the time allowed; the connection has been closed.
    case timeout(String)

    public var description: String {
        switch self {
        case .timeout(let m): return m
        case .badFrame(let m): return "bad frame: \(m)"
        case .frameTooLarge(let n, let max): return "frame of \(n) bytes exceeds the limit of \(max)"
        case .closed: return "connection closed"
        }
    }
}
