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
/// buffer) and is told to reload its data rather than holding the coordinator back.
public final class LiveFeed: Sendable {
    public enum Item: Sendable {
        case update(LiveUpdate)
        /// The page's sweep's job counts moved (told by its stream's own poll).
        case changed([String: Int])
        /// Updates were dropped: the page must fetch its data again.
        case overflow
        case ping
    }

    private struct Subscriber { let sweep: SweepID?; let continuation: AsyncStream<Item>.Continuation }
    private let subscribers = NIOLockedValueBox<[Int: Subscriber]>([:])
    private let nextID = NIOLockedValueBox(0)
    private let closed = NIOLockedValueBox(false)

    public init() {}

    public func publish(_ update: LiveUpdate) {
        for s in subscribers.withLockedValue({ Array($0.values) }) where s.sweep == nil || s.sweep == update.sweep {
            if case .dropped = s.continuation.yield(.update(update)) { s.continuation.yield(.overflow) }
        }
    }

    /// Tells one subscriber something of its own.
    public func tell(_ id: Int, _ item: Item) {
        subscribers.withLockedValue { $0[id] }?.continuation.yield(item)
    }

    /// A stream of the updates of one sweep (nil: all), until `cancel` or `close`.
    public func subscribe(sweep: SweepID?, buffer: Int = 1024) -> (id: Int, stream: AsyncStream<Item>) {
        let (stream, continuation) = AsyncStream<Item>.makeStream(bufferingPolicy: .bufferingNewest(buffer))
        let id = nextID.withLockedValue { $0 += 1; return $0 }
        if closed.withLockedValue({ $0 }) { continuation.finish(); return (id, stream) }
        subscribers.withLockedValue { $0[id] = Subscriber(sweep: sweep, continuation: continuation) }
        return (id, stream)
    }

    public func cancel(_ id: Int) {
        subscribers.withLockedValue { $0.removeValue(forKey: id) }?.continuation.finish()
    }

    /// Ends every stream (the coordinator is stopping: an open page must not hold it up).
    public func close() {
        closed.withLockedValue { $0 = true }
        for s in subscribers.withLockedValue({ subs in defer { subs.removeAll() }; return Array(subs.values) }) { s.continuation.finish() }
    }

    public var subscriberCount: Int { subscribers.withLockedValue { $0.count } }
}
