import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TunaCore

/// A TCP proxy in front of the coordinator that can turn into a black hole: while `blackHoled`
/// it forwards nothing in either direction and answers nothing, but closes nothing either, as a
/// partitioned network or a dead switch behaves. New connections are accepted and then left
/// silent. (A refused or reset connection is the easy case; this one gives no error at all.)
final class BlackHoleProxy: Sendable {
    private let hole = NIOLockedValueBox(false)
    private let connections = NIOLockedValueBox(0)
    private let server: Channel
    let port: Int

    init(to upstream: HostPort) async throws {
        let hole = self.hole, connections = self.connections
        server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { inbound in
                connections.withLockedValue { $0 += 1 }
                guard !hole.withLockedValue({ $0 }) else {
                    return inbound.pipeline.addHandler(Forward(to: nil, hole: hole))
                }
                return ClientBootstrap(group: inbound.eventLoop)
                    .connect(host: upstream.host, port: upstream.port)
                    .flatMap { outbound in
                        outbound.pipeline.addHandler(Forward(to: inbound, hole: hole)).flatMap {
                            inbound.pipeline.addHandler(Forward(to: outbound, hole: hole))
                        }
                    }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = server.localAddress?.port ?? 0
    }

    var address: HostPort { HostPort(host: "127.0.0.1", port: port) }

    /// Connections accepted so far (a reconnecting peer shows up here).
    var accepted: Int { connections.withLockedValue { $0 } }

    var blackHoled: Bool {
        get { hole.withLockedValue { $0 } }
        set { hole.withLockedValue { $0 = newValue } }
    }

    func close() { server.close(promise: nil) }

    /// Passes bytes to the other side unless the hole is open (then they are dropped, as a
    /// network that loses every packet would); a closed side closes the other.
    private final class Forward: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let partner: Channel?
        let hole: NIOLockedValueBox<Bool>
        init(to partner: Channel?, hole: NIOLockedValueBox<Bool>) { self.partner = partner; self.hole = hole }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = unwrapInboundIn(data)
            guard let partner, !hole.withLockedValue({ $0 }) else { return }
            partner.writeAndFlush(bytes, promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            partner?.close(promise: nil)
            context.fireChannelInactive()
        }
    }
}
