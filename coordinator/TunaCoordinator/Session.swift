import Foundation
import NIOConcurrencyHelpers
import NIOCore
import TunaCore
import TunaWire

/// One connected peer (a worker or a CLI). Mutable fields change only on the connection's
/// own task; the lock makes them safe to read from the coordinator actor.
public final class Session: Sendable {
    struct State {
        var role: String?
        var workerID: String?
        var principal: Principal?
        var gone = false
        /// When the peer was last heard from, and whether a request of its is being handled
        /// (the coordinator's own slowness is not the peer's silence).
        var lastHeard = NIODeadline.now()
        var busy = false
    }

    let id: Int
    private let outbound: NIOAsyncChannelOutboundWriter<Frame>
    private let channel: Channel
    private let state = NIOLockedValueBox(State())
    private let frameLimit: FrameLimit
    private let authenticatedMaxFrame: Int

    init(id: Int, outbound: NIOAsyncChannelOutboundWriter<Frame>, channel: Channel, frameLimit: FrameLimit, authenticatedMaxFrame: Int) {
        self.id = id; self.outbound = outbound; self.channel = channel
        self.frameLimit = frameLimit; self.authenticatedMaxFrame = authenticatedMaxFrame
    }

    /// Set once `hello` is accepted; from then on the connection may send full-size frames.
    var role: String? {
        get { state.withLockedValue { $0.role } }
        set {
            state.withLockedValue { $0.role = newValue }
            if newValue != nil { frameLimit.raise(to: authenticatedMaxFrame) }
        }
    }
    /// Whose token the connection said hello with.
    var principal: Principal? {
        get { state.withLockedValue { $0.principal } }
        set { state.withLockedValue { $0.principal = newValue } }
    }
    var workerID: String? {
        get { state.withLockedValue { $0.workerID } }
        set { state.withLockedValue { $0.workerID = newValue } }
    }

    /// Set once the connection has closed.
    var isGone: Bool {
        get { state.withLockedValue { $0.gone } }
        set { state.withLockedValue { $0.gone = newValue } }
    }

    /// Marks a request as being handled (`true`) or done (`false`); either way the peer was heard.
    func handling(_ busy: Bool) {
        state.withLockedValue { $0.busy = busy; $0.lastHeard = .now() }
    }

    /// How long the peer has been silent, or nil while one of its requests is being handled.
    func silence(now: NIODeadline) -> TimeAmount? {
        state.withLockedValue { $0.busy ? nil : now - $0.lastHeard }
    }

    /// Sends a message (and its binary frame, if any) in one write; a failed send means the
    /// peer is gone, which the connection loop notices on its own.
    func send<P: Encodable>(_ type: MessageType, re: Int64? = nil, _ payload: P, binary: Data? = nil) async {
        let json = Envelope.encode(type.rawValue, re: re, bin: binary?.count, payload)
        try? await outbound.write(contentsOf: binary.map { [Frame.json(json), .binary($0)] } ?? [.json(json)])
    }

    func close() { channel.close(promise: nil) }
}
