import Foundation
import TunaCore
@testable import TunaStore

/// Blocks on the store's async (group-committed) writes so the rules read as plain
/// sequential steps in these tests.
func block<T: Sendable>(_ f: @escaping @Sendable () async throws -> T) throws -> T {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var result: Result<T, Error>!
    Task { do { result = .success(try await f()) } catch { result = .failure(error) }; done.signal() }
    done.wait()
    return try result.get()
}

struct SyncStore {
    let store: Store
    var db: Store { store }

    func upsertWorker(_ r: Register, now: Int64) throws -> Bool { try block { try await store.upsertWorker(r, now: now) } }
    func insertSweep(_ p: SweepPlan, specYAML: String, now: Int64) throws -> Submitted { try block { try await store.insertSweep(p, specYAML: specYAML, now: now) } }
    func leaseNext(worker: String, request: JobRequest, now: Int64, policy: LeasePolicy) throws -> Lease? {
        try block { try await store.leaseNext(worker: worker, request: request, now: now, policy: policy) }
    }
    func renew(worker: String, leases: [AttemptRef], now: Int64, policy: LeasePolicy) throws -> [AttemptRef] {
        try block { try await store.renew(worker: worker, leases: leases, now: now, policy: policy) }
    }
    func expireLeases(now: Int64, policy: LeasePolicy) throws -> [(ref: AttemptRef, worker: String, confirmed: Bool)] { try block { try await store.expireLeases(now: now, policy: policy) } }
    @discardableResult
    func finish(_ ref: AttemptRef, worker: String, outcome: AttemptOutcome, now: Int64, policy: LeasePolicy) throws -> Bool {
        try block { try await store.finish(ref, worker: worker, outcome: outcome, now: now, policy: policy) }
    }
    /// Pauses an attempt as a worker does: its checkpoint uploaded, then `job_done` with the step.
    @discardableResult
    func pause(_ ref: AttemptRef, worker: String, step: Int, now: Int64, policy: LeasePolicy, checkpoint: Bool = true) throws -> Bool {
        if checkpoint {
            let digest = String(format: "%064llx", ref.job &* 1_000_003 &+ Int64(ref.attempt))
            let u = try beginUpload(ref, worker: worker, artifact: ArtifactInfo(kind: "checkpoint", name: "state.safetensors", sha256: digest, size: 1))
            try block { try await store.completeUpload(u.id, ref: ref, worker: worker, now: now) }
        }
        return try finish(ref, worker: worker, outcome: .paused(step: step), now: now, policy: policy)
    }
    func appendEvents(_ e: Events, worker: String, now: Int64) throws -> Int64 { try block { try await store.appendEvents(e, worker: worker, now: now) } }
    func beginUpload(_ ref: AttemptRef, worker: String, artifact: ArtifactInfo) throws -> Store.UploadState {
        try block { try await store.beginUpload(ref, worker: worker, artifact: artifact) }
    }
    func retry(sweep: SweepID) throws -> Int { try block { try await store.retry(sweep: sweep) } }
    func cancel(_ t: CancelRequest, now: Int64) throws -> (count: Int, running: [(AttemptRef, String)]) { try block { try await store.cancel(t, now: now) } }
    func unquarantine(worker: String) throws { try block { try await store.unquarantine(worker: worker) } }
    func results(sweep: SweepID?, sort: String?) throws -> [ResultRow] { try store.results(sweep: sweep, sort: sort) }
    func jobDetail(_ j: JobID) throws -> JobDetail { try store.jobDetail(j) }
    func workers(connected: Set<String>) throws -> [WorkerRow] { try store.workers(connected: connected) }
    func events(job: JobID, attempt: Int?) throws -> [EventRow] { try store.events(job: job, attempt: attempt) }
    func sweeps() throws -> [SweepRow] { try store.sweeps() }
}
