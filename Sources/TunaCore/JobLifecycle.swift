/// The job state machine, as one pure function: a job's status changes only here, and the
/// store persists each change in one transaction (single jobs through `next`, and the bulk
/// changes, cancelling or retrying a sweep, through `bulk`). An attempt's end decides both the
/// attempt's final state and its job's event (`end`). The reason a job failed lives in its own
/// column, not in the state.
///
///     queued ──lease──▶ running ──done──▶ succeeded
///       ▲  ▲              │ fail/lost (failures < max_attempts)
///       │  └──────────────┤ returned (worker shut down; does not count as a failure)
///       │                 └─ fail/lost (failures = max_attempts) ──▶ failed
///       └──retry── failed, cancelled          queued, running ──cancel──▶ cancelled
///                                             running ──early stopping──▶ stopped
///     queued ──the sweep's step budget cannot fit its next attempt──▶ stopped
///     running ──pause at a rung──▶ paused ──promoted──▶ queued (resumes from its checkpoint)
///                                    └──cancel──▶ cancelled; sweep has nothing left ──▶ stopped
public enum JobEvent: Sendable, Equatable {
    case leased
    case succeeded
    /// The attempt failed or its lease expired; `failures` counts this one.
    case failed(failures: Int, maxAttempts: Int)
    case returned
    case cancelled
    /// The sweep's early-stopping rule ended it (EarlyStopping).
    case stopped
    /// The attempt trained to the rung it was asked to pause at and checkpointed (ASHA, promotion mode).
    case paused
    /// The sweep's rule promoted a paused job to the next rung.
    case promoted
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
        case (.queued, .cancelled), (.running, .cancelled), (.paused, .cancelled): return .cancelled
        case (.running, .stopped), (.paused, .stopped), (.queued, .stopped): return .stopped
        case (.running, .paused): return .paused
        case (.paused, .promoted): return .queued
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

/// An attempt's state: `running` while its lease is held, then how it ended. `returned`: its
/// worker gave the job back unfailed (shutting down, `scancel`); the job is queued again and the
/// return does not count as a failure.
public enum AttemptState: String, Codable, Sendable, CaseIterable {
    case running, succeeded, failed, lost, returned, cancelled, stopped
    /// Trained to the rung it was asked to pause at and left a checkpoint (ASHA, promotion mode).
    case paused
}

/// How an attempt ended, as its worker (or the lease reaper: `lost`) reports it.
public enum AttemptOutcome: Sendable, Equatable {
    case succeeded
    case failed(String)
    case lost(String)
    case returned(String)
    /// Trained to `step`, the rung the lease asked it to pause at, and left a checkpoint there.
    case paused(step: Int)
}

extension JobLifecycle {
    /// An attempt's end: the attempt's final state, its job's event (`failures` counts the
    /// job's failures before this attempt) and the reason to store.
    public static func end(_ outcome: AttemptOutcome, failures: Int, maxAttempts: Int) -> (state: AttemptState, event: JobEvent, reason: String?) {
        switch outcome {
        case .succeeded: return (.succeeded, .succeeded, nil)
        case .failed(let why): return (.failed, .failed(failures: failures + 1, maxAttempts: maxAttempts), why)
        case .lost(let why): return (.lost, .failed(failures: failures + 1, maxAttempts: maxAttempts), why)
        case .returned(let why): return (.returned, .returned, why)
        case .paused: return (.paused, .paused, nil)
        }
    }

    /// For a change made to many jobs in one statement (cancel, retry): the statuses `event`
    /// applies in and the status it takes them to, read off `next`.
    public static func bulk(_ event: JobEvent) -> (from: [JobStatus], to: JobStatus) {
        let from = JobStatus.allCases.filter { next($0, event) != nil }
        let targets = Set(from.compactMap { next($0, event) })
        precondition(targets.count == 1, "\(event) takes jobs to \(targets): not one bulk change")
        return (from, targets.first!)
    }
}

extension Array where Element == JobStatus {
    /// `('queued', 'running')`, for an SQL `IN`.
    public var sqlList: String { "(" + map { "'\($0.rawValue)'" }.joined(separator: ", ") + ")" }
}
