import Foundation

/// The one way `tuna coordinator`, `tuna worker` and `tuna train` hear SIGINT/SIGTERM: the
/// signals' default action (exit at once) is turned off and `handler` runs on a dispatch queue
/// instead, until `cancel()`. The handler only sets a flag or cancels a task: what a process
/// does on a signal stays with the process (the coordinator stops serving; the worker records
/// the request at once, before any actor hop, so a trainer that exits on the same signal is
/// returned rather than failed; `tuna train` checkpoints at the next step).
///
/// Why not swift-service-lifecycle's ServiceGroup: three call sites, each with a different
/// reaction, and the worker's must be recorded synchronously on the signal's queue; a small type
/// says that more plainly than a service graph.
final class TerminationSignals {
    private let sources: [DispatchSourceSignal]

    init(_ signals: [Int32] = [SIGINT, SIGTERM], _ handler: @escaping @Sendable () -> Void) {
        sources = signals.map { sig in
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler(handler: handler)
            s.resume()
            return s
        }
    }

    func cancel() { sources.forEach { $0.cancel() } }
}
