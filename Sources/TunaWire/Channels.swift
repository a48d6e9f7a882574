import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import TunaCore

/// Builds the channel pipelines both sides use: TLS when configured, then framing with a size cap.
/// Message handling happens in async code over `NIOAsyncChannel`.
public enum Channels {
    public typealias Conn = NIOAsyncChannel<Frame, Frame>

    public static func configure(_ channel: Channel, maxFrame: Int) -> EventLoopFuture<Conn> {
        configure(channel, limit: FrameLimit(maxFrame))
    }

    static func configure(_ channel: Channel, limit: FrameLimit) -> EventLoopFuture<Conn> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(limit: limit)))
            try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
            return try Conn(wrappingChannelSynchronously: channel)
        }
    }

    /// An accepted connection and its frame limit (which the server raises once the peer is known).
    public struct Accepted: Sendable {
        public let conn: Conn
        public let limit: FrameLimit
    }

    /// Listens; each connection starts with frames of at most `initialMaxFrame`, in TLS when `tls` is given.
    public static func listen(_ addr: HostPort, initialMaxFrame: Int = Frame.defaultMaxLength, tls: NIOSSLContext? = nil,
                              group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws
        -> NIOAsyncChannel<Accepted, Never> {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: addr.host, port: addr.port) { channel in
                let limit = FrameLimit(initialMaxFrame)
                if let tls {
                    do { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) } catch {
                        return channel.eventLoop.makeFailedFuture(error)
                    }
                }
                return configure(channel, limit: limit).map { Accepted(conn: $0, limit: limit) }
            }
    }

    public static func connect(_ addr: HostPort, maxFrame: Int = Frame.defaultMaxLength, tls: NIOSSLContext? = nil,
                               group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> Conn {
        let serverName = TLS.serverName(addr)
        return try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(5))
            .connect(host: addr.host, port: addr.port) { channel in
                if let tls {
                    do { try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName)) } catch {
                        return channel.eventLoop.makeFailedFuture(error)
                    }
                }
                return configure(channel, maxFrame: maxFrame)
            }
    }
}
