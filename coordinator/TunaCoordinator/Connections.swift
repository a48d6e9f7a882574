import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// How the coordinator keeps its connections honest on a shared network: how many it holds,
/// how long an unauthenticated one may stay silent, and how quickly a silent peer is given up.
public struct ConnectionLimits: Sendable {
    /// Connections held at once, from everyone. Kept below the file-descriptor limit (see
    /// `effectiveMax`), so a flood is refused with a reply instead of piling up unanswered in the
    /// accept queue.
    public var maxConnections = 1024
    /// Connections held at once from one address: one misbehaving host cannot take them all.
    public var maxPerPeer = 128
    /// How long a connection may take to say an accepted `hello` before it is closed.
    public var helloDeadlineSeconds: Int64 = 10
    /// A worker silent this long (no ping, no anything) is taken for gone: its connection is
    /// closed, so no job is leased into a black hole; the worker gives up on the coordinator
    /// after the same silence and reconnects. Nil: `silence(leaseMs:)`'s default.
    public var silenceMs: Int64?

    /// The silence allowed under leases of `leaseMs`: as set, else half a lease and at most 6 s,
    /// so a silent worker is dropped before its leases run out.
    public func silence(leaseMs: Int64) -> Int64 { silenceMs ?? max(100, min(6_000, leaseMs / 2)) }

    /// How often a worker pings (sent in `registered`): four pings fit in one silence, so a late
    /// one is not taken for a dead link; at most one a second.
    public func ping(leaseMs: Int64) -> Int64 { max(25, min(1_000, silence(leaseMs: leaseMs) / 4)) }

    /// A client (the CLI) silent this long is disconnected.
    public var clientIdleSeconds: Int64 = 300

    public init() {}

    /// `maxConnections`, lowered to leave room under the process's file-descriptor limit for
    /// the database, the artifacts being written and the listener.
    public var effectiveMax: Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(Int32.max) else { return maxConnections }
        return max(1, min(maxConnections, Int(limit.rlim_cur) - 64))
    }
}

/// Counts open connections, in all and per peer address, and admits or refuses new ones.
final class ConnectionCounter: Sendable {
    private struct State {
        var total = 0
        var byPeer: [String: Int] = [:]
        var refusedSinceLog = 0
        var lastLog = Date.distantPast
    }
    private let state = NIOLockedValueBox(State())
    let maxTotal: Int
    let maxPerPeer: Int

    init(maxTotal: Int, maxPerPeer: Int) { self.maxTotal = maxTotal; self.maxPerPeer = maxPerPeer }

    /// Nil when admitted (call `release` when it closes), else why not.
    func admit(_ peer: String) -> String? {
        state.withLockedValue { s in
            if s.total >= maxTotal { return "the coordinator holds its maximum of \(maxTotal) connections; try again later" }
            if s.byPeer[peer, default: 0] >= maxPerPeer { return "\(peer) already holds the maximum of \(maxPerPeer) connections per address" }
            s.total += 1
            s.byPeer[peer, default: 0] += 1
            return nil
        }
    }

    func release(_ peer: String) {
        state.withLockedValue { s in
            s.total -= 1
            s.byPeer[peer, default: 1] -= 1
            if s.byPeer[peer] == 0 { s.byPeer[peer] = nil }
        }
    }

    var open: Int { state.withLockedValue { $0.total } }

    /// Counts a refusal; returns how many there were since the last log line when one is due
    /// (at most one line per 10 s: a flood must not flood the log too).
    func refusalToLog() -> Int? {
        state.withLockedValue { s in
            s.refusedSinceLog += 1
            guard Date().timeIntervalSince(s.lastLog) >= 10 else { return nil }
            defer { s.refusedSinceLog = 0; s.lastLog = Date() }
            return s.refusedSinceLog
        }
    }
}
