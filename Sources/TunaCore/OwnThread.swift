import Foundation

/// Runs CPU-heavy work on a Dispatch thread rather than on Swift concurrency's cooperative
/// pool (one thread per core: two here), and waits for it: the coordinator's connections are
/// served by tasks on that pool, and a large submit's seconds of expansion must not hold it.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { cont in
        DispatchQueue.global(qos: .userInitiated).async { cont.resume(with: Result { try body() }) }
    }
}
