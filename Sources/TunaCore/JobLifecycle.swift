/// The job state machine, as one pure function: a job's status changes only here, and the
/// store persists each change in one transaction. The reason a job failed lives in its own
/// column, not in the state.
///
///     queued ──lease──▶ running ──done──▶ succeeded
///       ▲  ▲              │ fail/lost (failures < max_attempts)
///       │  └──────────────┤ returned (worker shut down; does not count as a failure)
///       │                 └─ fail/lost (failures = max_attempts) ──▶ failed
///       └──retry── failed, cancelled          queued, running ──cancel──▶ cancelled
public enum JobEvent: Sendable, Equatable {
    case leased
    case succeeded
    /// The attempt failed or its lease expired; `failures` counts this one.
    case failed(failures: Int, maxAttempts: Int)
    case returned
    case cancelled
    case retried
}

public enum JobLifecycle {
    /// The next status, or nil when the event does not apply in this status (a late or
    /// duplicate message); callers refuse such events and change nothing.
    public static func next(_ status: JobStatus, _ event: JobEvent) -> JobStatus? {
        switch (status, event) {
        case (.queued, .leased): return .running
        case (.running, .succeeded): return .succeeded
        case (.running, .failed(let failures, let max)): return failures >= max ? .failed : .queued
        case (.running, .returned): return .queued
        case (.queued, .cancelled), (.running, .cancelled): return .cancelled
        case (.failed, .retried), (.cancelled, .retried): return .queued
        default: return nil
        }
    }

    /// Exponential backoff before a failed job is offered again: base·2^(failures−1), capped.
    public static func backoffMs(failures: Int, baseMs: Int64, capMs: Int64) -> Int64 {
        guard failures > 0 else { return 0 }
        let shift = min(failures - 1, 30)
        return min(capMs, baseMs << Int64(shift))
    }
}
