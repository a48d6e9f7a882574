import Foundation
import Logging
import NIOCore
import NIOPosix
import TunaCore
import TunaStore
import TunaWire

public struct CoordinatorConfig: Sendable {
    public var listen: HostPort
    public var dataDir: URL
    public var token: String?
    public var policy = LeasePolicy()
    public var sync: Store.Sync = .full
    public var maxFrame = Frame.defaultMaxLength
    /// The largest frame before `hello` is accepted.
    public var unauthenticatedMaxFrame = Frame.unauthenticatedMaxLength
    /// How long a connection may take to say an accepted `hello` before it is closed.
    public var helloDeadlineSeconds: Int64 = 10
    public var reapIntervalMs: Int64?

    public init(listen: HostPort, dataDir: URL, token: String?) {
        self.listen = listen; self.dataDir = dataDir; self.token = token
    }
}

/// The coordinator process: the TCP listener, one task per connection, and the reaper.
public final class CoordinatorServer: Sendable {
    public let config: CoordinatorConfig
    let coordinator: Coordinator
    let store: Store
    let artifacts: ArtifactStore
    let intake: ArtifactIntake
    let log: Logger

    public init(config: CoordinatorConfig, log: Logger = Logger(label: "tuna.coordinator")) throws {
        if !config.listen.isLoopback && (config.token ?? "").isEmpty {
            throw TunaError.invalid("a token is required when listening on \(config.listen.host) (not loopback): pass --token-file")
        }
        self.config = config
        self.log = log
        try FileManager.default.createDirectory(at: config.dataDir, withIntermediateDirectories: true)
        store = try Store(path: config.dataDir.appendingPathComponent("tuna.sqlite").path, sync: config.sync)
        artifacts = try ArtifactStore(dataDir: config.dataDir)
        intake = ArtifactIntake(store: store, artifacts: artifacts)
        coordinator = Coordinator(store: store, policy: config.policy, log: log)
    }

    /// Binds, then calls `onListening` with the bound port (useful with port 0), then serves
    /// until the task is cancelled.
    public func run(onListening: @Sendable (Int) -> Void = { _ in }) async throws {
        try await store.extendRunningLeases(now: await coordinator.now, policy: config.policy)
        let server = try await Channels.listen(config.listen, initialMaxFrame: config.unauthenticatedMaxFrame)
        let port = server.channel.localAddress?.port ?? config.listen.port
        log.info("listening on \(config.listen.host):\(port), data in \(config.dataDir.path)")
        onListening(port)
        let interval = config.reapIntervalMs ?? max(50, min(1000, config.policy.leaseMs / 4))
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { [coordinator] in
                while !Task.isCancelled {
                    try await Task.sleep(nanoseconds: UInt64(interval) * 1_000_000)
                    await coordinator.reap()
                }
            }
            try await server.executeThenClose { inbound in
                var next = 0
                for try await accepted in inbound {
                    next += 1
                    let id = next
                    group.addTask { await self.serve(accepted, id: id) }
                }
            }
        }
    }

    /// One connection: read messages in order and answer each. Protocol errors (a bad frame,
    /// an unknown message, a wrong token) get an error reply and close this connection only.
    /// Until its `hello` is accepted a connection may send only small frames, and it is closed
    /// if that has not happened within `helloDeadlineSeconds`: an unauthenticated peer can hold
    /// neither memory nor a connection for long.
    func serve(_ accepted: Channels.Accepted, id: Int) async {
        let conn = accepted.conn, channel = conn.channel
        try? await conn.executeThenClose { inbound, outbound in
            let session = Session(id: id, outbound: outbound, channel: channel, frameLimit: accepted.limit,
                                  authenticatedMaxFrame: self.config.maxFrame)
            let deadline = channel.eventLoop.scheduleTask(in: .seconds(self.config.helloDeadlineSeconds)) {
                if session.role == nil { channel.close(promise: nil) }
            }
            defer { deadline.cancel() }
            var assembler = MessageAssembler()
            do {
                for try await frame in inbound {
                    guard let msg = try assembler.feed(frame) else { continue }
                    do {
                        try await self.route(msg, session)
                    } catch let e as ErrorReply {
                        await session.send(.error, re: msg.header.id, e)
                        if e.code.closesConnection { break }
                    } catch let e as StoreError {
                        await session.send(.error, re: msg.header.id, ErrorReply(e))
                    } catch {
                        // A file-system or other unexpected failure: say so, keep the connection.
                        self.log.error("\(msg.type): \(error)")
                        await session.send(.error, re: msg.header.id, ErrorReply(code: .internal, message: "\(msg.type) failed: \(error)"))
                    }
                }
            } catch let e as ErrorReply {
                await session.send(.error, e)
            } catch let e as WireError {
                await session.send(.error, ErrorReply(code: .badFrame, message: e.description))
            } catch {
                // The peer went away (reset, EOF mid-frame): nothing to tell it.
            }
            await self.coordinator.disconnected(session)
        }
    }
}

extension ErrorReply {
    /// The store's refusals as the wire says them: the one place they are mapped.
    init(_ e: StoreError) {
        switch e {
        case .notFound(let m): self.init(code: .notFound, message: m)
        case .staleAttempt: self.init(code: .staleAttempt, message: e.description)
        case .badRequest(let m): self.init(code: .badRequest, message: m)
        case .database(let m): self.init(code: .internal, message: m)
        }
    }
}
