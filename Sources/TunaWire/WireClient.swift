import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import TunaCore

/// A connection to the coordinator that matches replies to requests by id. Messages that
/// are not replies (pushes such as `cancel`) arrive on `pushes`. Used by the CLI and the
/// worker daemon alike.
public final class WireClient: Sendable {
    private struct State {
        var nextID: Int64 = 1
        var pending: [Int64: CheckedContinuation<Incoming, Error>] = [:]
        var closed: Error?
    }

    private let state = NIOLockedValueBox(State())
    private let outbound: NIOAsyncChannelOutboundWriter<Frame>
    private let channel: Channel
    public let pushes: AsyncStream<Incoming>
    public static let maxReplyFrame = 1 << 30

    /// Connects and says hello; throws `ErrorReply` if the coordinator refuses (bad token, version).
    public static func connect(_ addr: HostPort, token: String?, role: String, tls: NIOSSLContext? = nil) async throws -> WireClient {
        try await connect(addr, hello: Hello(token: token, role: role), tls: tls)
    }

    /// How long a coordinator may take to answer `hello`. A coordinator out of file descriptors
    /// leaves new connections in its accept queue: the TCP connect succeeds and nothing more
    /// happens, which would otherwise hang the CLI without a word.
    public static let helloTimeout: Duration = .seconds(10)

    /// Connects and says `hello` as given (tests speak other versions with it).
    public static func connect(_ addr: HostPort, hello: Hello, tls: NIOSSLContext? = nil,
                               helloTimeout: Duration = WireClient.helloTimeout) async throws -> WireClient {
        let conn: Channels.Conn
        // Replies can be large (the results of a 100,000-job sweep are ~25 MiB of JSON); the
        // size cap protects the coordinator from peers, and a client trusts its coordinator.
        do { conn = try await Channels.connect(addr, maxFrame: WireClient.maxReplyFrame, tls: tls) } catch {
            throw TunaError.io("cannot reach the coordinator at \(addr): \(error)")
        }
        let client = await WireClient(conn, addr: addr, tls: tls)
        do {
            _ = try await client.send(hello, timeout: helloTimeout,
                                      "the coordinator at \(addr) accepted the connection but did not answer hello within \(helloTimeout) (overloaded, or out of file descriptors?)")
        } catch WireError.closed where tls == nil {
            client.close()
            throw TunaError.io("the coordinator at \(addr) closed the connection before answering hello (if it serves TLS, pass --tls-ca)")
        } catch {
            client.close()
            throw error
        }
        return client
    }

    private init(_ conn: Channels.Conn, addr: HostPort, tls: NIOSSLContext?) async {
        channel = conn.channel
        let (pushes, pushCont) = AsyncStream.makeStream(of: Incoming.self)
        self.pushes = pushes
        let (ready, readyCont) = AsyncStream.makeStream(of: NIOAsyncChannelOutboundWriter<Frame>.self)
        let state = self.state
        Task {
            do {
                try await conn.executeThenClose { inbound, outbound in
                    readyCont.yield(outbound)
                    readyCont.finish()
                    var assembler = MessageAssembler()
                    for try await frame in inbound {
                        guard let msg = try assembler.feed(frame) else { continue }
                        if let re = msg.header.re, let cont = state.withLockedValue({ $0.pending.removeValue(forKey: re) }) {
                            cont.resume(returning: msg)
                        } else if msg.type == MessageType.error.rawValue, msg.header.re == nil,
                                  let refusal = try? Envelope.decode(ErrorReply.self, from: msg.json, message: "error") {
                            // An error about the connection itself (refused at the door, a bad
                            // frame): every request waiting on it fails with the coordinator's reason.
                            WireClient.fail(state, with: refusal)
                            pushCont.yield(msg)
                        } else {
                            pushCont.yield(msg)
                        }
                    }
                }
                WireClient.fail(state, with: WireError.closed)
            } catch {
                // A failed TLS handshake says why; anything else is a dropped connection.
                var why: String?
                if let tls { why = await TLS.explain(error, addr: addr, context: tls) }
                WireClient.fail(state, with: why.map { TunaError.io($0) } ?? WireError.closed)
            }
            readyCont.finish()
            pushCont.finish()
            WireClient.fail(state, with: WireError.closed)
        }
        var it = ready.makeAsyncIterator()
        // The stream yields exactly once unless the connection died first; a dead writer
        // fails its first write, which callers see as `closed`.
        if let w = await it.next() { outbound = w } else {
            outbound = await WireClient.deadWriter(conn)
        }
    }

    /// Ends the connection's life for requests: those waiting fail with `error`, later ones too.
    private static func fail(_ state: NIOLockedValueBox<State>, with error: Error) {
        let waiting = state.withLockedValue { s -> [CheckedContinuation<Incoming, Error>] in
            if s.closed == nil { s.closed = error }
            defer { s.pending.removeAll() }
            return Array(s.pending.values)
        }
        for c in waiting { c.resume(throwing: error) }
    }

    private static func deadWriter(_ conn: Channels.Conn) async -> NIOAsyncChannelOutboundWriter<Frame> {
        // Only reached when the channel closed before the writer was handed out.
        let (stream, _) = NIOAsyncChannelOutboundWriter<Frame>.makeTestingWriter()
        return stream
    }

    public var isClosed: Bool { state.withLockedValue { $0.closed != nil } || !channel.isActive }

    public func close() { channel.close(promise: nil) }

    /// Sends a request and waits for its reply (an `error` reply is thrown as `ErrorReply`).
    public func send<R: Request>(_ request: R, binary: Data? = nil) async throws -> R.Reply {
        try await sendRaw(request, binary: binary).decode(R.Reply.self)
    }

    /// Sends a request and waits at most `timeout` for its reply; if none comes the connection
    /// is closed (the peer, or the path to it, is taken for dead) and `WireError.timeout(what)`
    /// thrown. Every other request on this connection then fails with `closed`.
    public func send<R: Request>(_ request: R, timeout: Duration, _ what: String) async throws -> R.Reply {
        let timedOut = NIOLockedValueBox(false)
        let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)) { [channel] in
            timedOut.withLockedValue { $0 = true }
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        do {
            return try await send(request)
        } catch is WireError where timedOut.withLockedValue({ $0 }) {
            throw WireError.timeout(what)
        }
    }

    /// Sends a request and returns its reply as received: for replies followed by a binary
    /// frame (`results`, `read_artifact`).
    public func sendRaw<R: Request>(_ request: R, binary: Data? = nil) async throws -> Incoming {
        try await requestRaw(R.type.rawValue, request, binary: binary)
    }

    /// Any message type with any payload, for the tests that send what a well-behaved peer
    /// never would (unknown types, wrong payloads). Everything else uses `send`.
    public func requestRaw<P: Encodable>(_ type: String, _ payload: P, binary: Data? = nil) async throws -> Incoming {
        let id = state.withLockedValue { s -> Int64 in defer { s.nextID += 1 }; return s.nextID }
        let frame = Envelope.encode(type, id: id, bin: binary?.count, payload)
        return try await withCheckedThrowingContinuation { cont in
            let closed = state.withLockedValue { s -> Bool in
                if s.closed != nil { return true }
                s.pending[id] = cont
                return false
            }
            if closed { cont.resume(throwing: state.withLockedValue { $0.closed } ?? WireError.closed); return }
            Task {
                do {
                    // One write for both frames, so a concurrent request cannot slip between
                    // a message and the binary frame it announces.
                    try await outbound.write(contentsOf: binary.map { [.json(frame), .binary($0)] } ?? [.json(frame)])
                } catch {
                    if let c = state.withLockedValue({ $0.pending.removeValue(forKey: id) }) { c.resume(throwing: WireError.closed) }
                }
            }
        }
    }

    /// Sends a frame with no reply expected (used by tests to send garbage).
    public func sendFrame(_ frame: Frame) async throws { try await outbound.write(frame) }
}
