import NIOConcurrencyHelpers

/// Wakes the tasks waiting for something an actor changes (a job slot freed, an event to send,
/// an attempt's events all stored), instead of their polling it. A waiter reads `generation`
/// while it checks its condition, and `wait(after:)` returns at once if a wake-up came in
/// between (no lost wake-ups across the actor hop); a cancelled waiter throws
/// `CancellationError` at once (a dropped connection ends its session's tasks).
final class Wakeup: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var waiting: [UInt64: CheckedContinuation<Void, Error>] = [:]
        var nextID: UInt64 = 0
    }
    private let state = NIOLockedValueBox(State())

    var generation: UInt64 { state.withLockedValue { $0.generation } }

    /// Wakes every waiter.
    func wake() {
        let waiters = state.withLockedValue { s -> [CheckedContinuation<Void, Error>] in
            s.generation &+= 1
            defer { s.waiting.removeAll() }
            return Array(s.waiting.values)
        }
        for w in waiters { w.resume() }
    }

    /// Suspends until the next `wake()` after `generation` (at once if one has come already).
    func wait(after generation: UInt64) async throws {
        let id = state.withLockedValue { s -> UInt64 in s.nextID &+= 1; return s.nextID }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Void, Error>) in
                let now: Result<Void, Error>? = state.withLockedValue { s in
                    if Task.isCancelled { return .failure(CancellationError()) }
                    if s.generation != generation { return .success(()) }
                    s.waiting[id] = cont
                    return nil
                }
                if let now { cont.resume(with: now) }
            }
        } onCancel: {
            state.withLockedValue { $0.waiting.removeValue(forKey: id) }?.resume(throwing: CancellationError())
        }
    }
}
