import TunaCore

/// What the store refuses or fails at, in its own terms. The coordinator turns it into a wire
/// error in one place (`ErrorReply(_: StoreError)` in TunaCoordinator); the store never speaks
/// the wire's error type.
public enum StoreError: Error, Equatable, CustomStringConvertible {
    /// No such sweep, job, worker or upload.
    case notFound(String)
    /// The attempt is not the live one held by this worker (fencing): its result is refused.
    case staleAttempt(AttemptRef, String)
    /// A request the store cannot act on as asked (cancel with no target, an unknown sort column).
    case badRequest(String)
    /// The coordinator's own disk could not take the write (full, read-only, an I/O error): the
    /// coordinator's fault, never the job's or the worker's; retried once there is room.
    case storage(String)
    /// Over a limit the operator set (an artifact's or an attempt's size).
    case quota(String)
    /// SQLite failed otherwise, or a row did not read back.
    case database(String)

    public var description: String {
        switch self {
        case .notFound(let m), .badRequest(let m), .storage(let m), .quota(let m), .database(let m): return m
        case .staleAttempt(let ref, let why): return "job \(ref.job) attempt \(ref.attempt): \(why)"
        }
    }
}
