import Foundation
import NIOConcurrencyHelpers
import TunaCore
import TunaStore

/// What the coordinator tells the dashboard as it happens: a batch of curve points of a job,
/// pushed to the open pages of its sweep.
public struct LiveUpdate: Sendable {
    public var sweep: SweepID
    public var job: JobID
    public var points: [CurvePoint]
    public init(sweep: SweepID, job: JobID, points: [CurvePoint]) { self.sweep = sweep; self.job = job; self.points = points }
}

/// A broadcaster from the coordinator's routes to the open event streams (`/api/sweeps/N/stream`).
/// Publishing never waits: a page that reads too slowly loses its oldest updates (bounded
/// buffer) and is told once to reload its data rather than holding the coordinator back.
public final class LiveFeed: Sendable {
    public enum Item: Sendable {
        case update(LiveUpdate)
        /// The page's sweep's job counts moved (told by its stream's own poll).
        case changed([String: Int])
        /// Updates were dropped: the page must fetch its data again (sent by the stream when
        /// `takeOverflow` says so, never buffered).
        case overflow
        case ping
    }

    private struct Subscriber { let sweep: SweepID?; let continuation: AsyncStream<Item>.Continuation; var overflowed = false }
    private struct State { var subscribers: [Int: Subscriber] = [:]; var nextID = 0; var closed = false }
    private let state = NIOLockedValueBox(State())

    public init() {}

    public func publish(_ update: LiveUpdate) {
        state.withLockedValue { st in
            for (id, s) in st.subscribers where s.sweep == nil || s.sweep == update.sweep {
                if case .dropped = s.continuation.yield(.update(update)) { st.subscribers[id]?.overflowed = true }
            }
        }
    }

    /// Whether updates were dropped for this subscriber since it last asked (then: reload).
    public func takeOverflow(_ id: Int) -> Bool {
        state.withLockedValue { st in
            guard st.subscribers[id]?.overflowed == true else { return false }
            st.subscribers[id]?.overflowed = false
            return true
        }
    }

    /// Tells one subscriber something of its own.
    public func tell(_ id: Int, _ item: Item) {
        state.withLockedValue { $0.subscribers[id] }?.continuation.yield(item)
    }

    /// A stream of the updates of one sweep (nil: all), until `cancel` or `close`.
    public func subscribe(sweep: SweepID?, buffer: Int = 1024) -> (id: Int, stream: AsyncStream<Item>) {
        let (stream, continuation) = AsyncStream<Item>.makeStream(bufferingPolicy: .bufferingNewest(buffer))
        let id: Int? = state.withLockedValue { st in
            guard !st.closed else { return nil }
            st.nextID += 1
            st.subscribers[st.nextID] = Subscriber(sweep: sweep, continuation: continuation)
            return st.nextID
        }
        guard let id else { continuation.finish(); return (0, stream) }
        return (id, stream)
    }

    public func cancel(_ id: Int) {
        state.withLockedValue { $0.subscribers.removeValue(forKey: id) }?.continuation.finish()
    }

    /// Ends every stream (the coordinator is stopping: an open page must not hold it up).
    public func close() {
        let all = state.withLockedValue { st in
            st.closed = true
            defer { st.subscribers.removeAll() }
            return Array(st.subscribers.values)
        }
        for s in all { s.continuation.finish() }
    }
}
