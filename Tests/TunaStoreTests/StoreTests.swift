import GRDB
import XCTest
import TunaCore
@testable import TunaStore

/// The store's rules, on a fresh in-memory database with an explicit clock (`now` arguments).
final class StoreTests: XCTestCase {
    var store: SyncStore!
    var policy = LeasePolicy()
    let cpu = JobRequest(free_gpus: [], trainers: ["command"])

    override func setUpWithError() throws {
        store = SyncStore(store: try Store(path: nil))
        policy.leaseMs = 1000
        policy.backoffBaseMs = 100
        policy.quarantineAfter = 2
        for w in ["w1", "w2"] {
            _ = try store.upsertWorker(Register(worker_id: w, name: w, capabilities: Capabilities(hostname: w, trainers: ["command"], gpus: [], cpu_cores: 2, ram_gb: 8),
                                                max_jobs: 1, running: []), now: 0)
        }
    }

    @discardableResult
    func submit(_ extra: String = "", now: Int64 = 0) throws -> Submitted {
        let yaml = "name: s\ntrainer: command\ncommand: [x]\n" + extra
        return try store.insertSweep(try SweepSpec.plan(yaml: yaml), specYAML: yaml, now: now)
    }

    func testHighestPriorityThenOldestFirst() throws {
        try submit("i: [1, 2]\npriority: 0")
        try submit("i: [3]\npriority: 5")
        let order = try (0..<3).map { _ in try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: 1, policy: policy)).spec["i"] }
        XCTAssertEqual(order, [.int(3), .int(1), .int(2)])
        XCTAssertNil(try store.leaseNext(worker: "w1", request: cpu, now: 1, policy: policy))
    }

    func testJobsGoOnlyToWorkersThatFit() throws {
        try submit("resources: {gpus: 2, gpu_memory_gb: 40}")
        XCTAssertNil(try store.leaseNext(worker: "w1", request: cpu, now: 1, policy: policy), "no GPUs")
        let small = JobRequest(free_gpus: [GPUInfo(index: 0, name: "A", memory_gb: 80), GPUInfo(index: 1, name: "B", memory_gb: 24)], trainers: ["command"])
        XCTAssertNil(try store.leaseNext(worker: "w1", request: small, now: 1, policy: policy), "second GPU too small")
        let torchOnly = JobRequest(free_gpus: [GPUInfo(index: 0, name: "A", memory_gb: 80), GPUInfo(index: 1, name: "A", memory_gb: 80)], trainers: ["torch"])
        XCTAssertNil(try store.leaseNext(worker: "w1", request: torchOnly, now: 1, policy: policy), "trainer not offered")
        let big = JobRequest(free_gpus: [GPUInfo(index: 0, name: "A", memory_gb: 80), GPUInfo(index: 1, name: "A", memory_gb: 80)], trainers: ["command"])
        XCTAssertNotNil(try store.leaseNext(worker: "w1", request: big, now: 1, policy: policy))
    }

    func testExpiredLeaseRequeuesAndTheLateWorkerIsRefused() throws {
        try submit()
        let l = try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: 0, policy: policy))
        let ref = AttemptRef(job: l.job, attempt: l.attempt)
        XCTAssertEqual(try store.renew(worker: "w1", leases: [ref], now: 500, policy: policy), [])
        XCTAssertEqual(try store.expireLeases(now: 1400, policy: policy).count, 0, "renewed at 500, valid until 1500")
        XCTAssertEqual(try store.expireLeases(now: 1600, policy: policy).map(\.0), [ref])
        // Backoff: not offered before 1600 + 100.
        XCTAssertNil(try store.leaseNext(worker: "w2", request: cpu, now: 1650, policy: policy))
        let l2 = try XCTUnwrap(store.leaseNext(worker: "w2", request: cpu, now: 1700, policy: policy))
        XCTAssertEqual(l2.attempt, 2)
        // The first worker comes back and tries to finish: refused, on every path.
        XCTAssertThrowsError(try store.finish(ref, worker: "w1", outcome: .succeeded, now: 1800, policy: policy)) {
            guard case .staleAttempt? = $0 as? StoreError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try store.appendEvents(Events(job: l.job, attempt: 1, events: []), worker: "w1", now: 1800))
        XCTAssertThrowsError(try store.beginUpload(ref, worker: "w1", artifact: ArtifactInfo(kind: "adapter", name: "a", sha256: String(repeating: "0", count: 64), size: 1)))
        XCTAssertEqual(try store.renew(worker: "w1", leases: [ref], now: 1800, policy: policy), [ref])
        // The second attempt finishes; a duplicate done is refused.
        let ref2 = AttemptRef(job: l2.job, attempt: 2)
        try store.finish(ref2, worker: "w2", outcome: .succeeded, now: 1900, policy: policy)
        XCTAssertThrowsError(try store.finish(ref2, worker: "w2", outcome: .succeeded, now: 1901, policy: policy))
        let d = try store.jobDetail(l.job)
        XCTAssertEqual(d.job.status, .succeeded)
        XCTAssertEqual(d.attempts.map(\.state), ["lost", "succeeded"])
    }

    /// A lease its worker never named in a heartbeat or a registration never reached it (sent
    /// into a dead connection): at expiry the job is requeued at once, as `returned`, counted
    /// against neither the job nor the worker. A confirmed one that expires is `lost`: a failure.
    func testAnUnconfirmedLeaseExpiresAsReturnedAndAConfirmedOneAsLost() throws {
        try submit("max_attempts: 1")
        let l = try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: 0, policy: policy))
        let expired = try store.expireLeases(now: 1100, policy: policy)
        XCTAssertEqual(expired.map(\.ref), [AttemptRef(job: l.job, attempt: l.attempt)])
        XCTAssertEqual(expired.map(\.confirmed), [false])
        var d = try store.jobDetail(l.job)
        XCTAssertEqual(d.job.status, .queued, "max_attempts 1, and still queued: no failure counted")
        XCTAssertEqual(d.attempts.map(\.state), ["returned"])
        let again = try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: 1100, policy: policy), "no backoff")
        XCTAssertEqual(again.attempt, 2)
        // Confirmed by a heartbeat, then silent: lost, and with max_attempts 1 the job fails.
        XCTAssertEqual(try store.renew(worker: "w1", leases: [AttemptRef(job: again.job, attempt: 2)], now: 1200, policy: policy), [])
        XCTAssertEqual(try store.expireLeases(now: 2300, policy: policy).map(\.confirmed), [true])
        d = try store.jobDetail(l.job)
        XCTAssertEqual(d.job.status, .failed)
        XCTAssertEqual(d.attempts.map(\.state), ["returned", "lost"])
    }

    func testFailuresRetryUpToMaxAttemptsThenFail() throws {
        try submit("max_attempts: 2")
        for (i, w) in ["w1", "w2"].enumerated() {
            let l = try XCTUnwrap(store.leaseNext(worker: w, request: cpu, now: Int64(i) * 1000, policy: policy))
            try store.finish(AttemptRef(job: l.job, attempt: l.attempt), worker: w, outcome: .failed("boom \(i)"), now: Int64(i) * 1000, policy: policy)
        }
        let r = try store.results(sweep: nil, sort: nil)[0]
        XCTAssertEqual(r.status, .failed)
        XCTAssertEqual(r.attempts, 2)
        XCTAssertEqual(r.error, "boom 1")
        XCTAssertEqual(try store.retry(sweep: 1), 1)
        XCTAssertEqual(try store.results(sweep: nil, sort: nil)[0].status, .queued)
        XCTAssertNotNil(try store.leaseNext(worker: "w1", request: cpu, now: 5000, policy: policy))
    }

    func testReturnedJobsDoNotCountAsFailures() throws {
        try submit("max_attempts: 1")
        let l = try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: 0, policy: policy))
        try store.finish(AttemptRef(job: l.job, attempt: 1), worker: "w1", outcome: .returned("SIGTERM"), now: 10, policy: policy)
        let l2 = try XCTUnwrap(store.leaseNext(worker: "w2", request: cpu, now: 10, policy: policy), "requeued at once, no backoff")
        XCTAssertEqual(l2.attempt, 2)
    }

    func testWorkerIsQuarantinedAfterConsecutiveFailures() throws {
        try submit("i: [1, 2, 3]")
        for t in 0..<2 {
            let l = try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: Int64(t), policy: policy))
            try store.finish(AttemptRef(job: l.job, attempt: l.attempt), worker: "w1", outcome: .failed("CUDA OOM"), now: Int64(t), policy: policy)
        }
        XCTAssertNil(try store.leaseNext(worker: "w1", request: cpu, now: 10_000, policy: policy), "quarantined")
        let w = try store.workers(connected: []).first { $0.id == "w1" }
        XCTAssertEqual(w?.quarantined, true)
        XCTAssert(w?.quarantine_reason?.contains("CUDA OOM") == true)
        XCTAssertNotNil(try store.leaseNext(worker: "w2", request: cpu, now: 10_000, policy: policy), "others keep working")
        try store.unquarantine(worker: "w1")
        XCTAssertNotNil(try store.leaseNext(worker: "w1", request: cpu, now: 10_000, policy: policy))
    }

    func testEventsAreStoredOnceAndSummarised() throws {
        try submit()
        let l = try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: 0, policy: policy))
        let evs: [EventRecord] = [
            EventRecord(seq: 0, at_ms: 1, event: ["event": "step", "step": 1, "loss": 2.0, "tokens_per_s": 100.0]),
            EventRecord(seq: 1, at_ms: 2, event: ["event": "eval", "loss": 1.5]),
            EventRecord(seq: 2, at_ms: 3, event: ["event": "step", "step": 2, "loss": 1.2]),
            EventRecord(seq: 3, at_ms: 4, event: ["event": "eval", "loss": 1.7]),
        ]
        let batch = Events(job: l.job, attempt: 1, events: evs)
        XCTAssertEqual(try store.appendEvents(batch, worker: "w1", now: 5), 3)
        XCTAssertEqual(try store.appendEvents(batch, worker: "w1", now: 6), 3, "a resent batch is acknowledged again")
        XCTAssertEqual(try store.events(job: l.job, attempt: nil).count, 4, "and stored once")
        let r = try store.results(sweep: 1, sort: "best_val_loss")[0]
        XCTAssertEqual(r.final_train_loss, 1.2); XCTAssertEqual(r.best_val_loss, 1.5); XCTAssertEqual(r.final_val_loss, 1.7)
        XCTAssertEqual(r.tokens_per_s, 100)
        XCTAssertNil(r.metrics, "a LoRA eval has no numbers beyond its loss")
        XCTAssertThrowsError(try store.results(sweep: 1, sort: "1; DROP TABLE jobs"))
    }

    /// A `baseline` event's losses and an `eval` event's numbers beyond loss/tokens/position (a
    /// prune job's) become the job's `metrics`, the last value of each name winning; a new lease
    /// starts them over.
    func testEvalMetricsAreSummarised() throws {
        try submit()
        let l = try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: 0, policy: policy))
        let evs: [EventRecord] = [
            EventRecord(seq: 0, at_ms: 1, event: ["event": "baseline", "loss": 2.5, "general_loss": 2.75]),
            EventRecord(seq: 1, at_ms: 2, event: ["event": "prune_eval", "keep": 6, "loss": 2.6, "kl": 0.5]),
            EventRecord(seq: 2, at_ms: 3, event: ["event": "eval", "keep": 4, "loss": 2.7, "tokens": 100, "kl": 0.25,
                                                  "top1_agreement": 0.75, "step": 0]),
        ]
        XCTAssertEqual(try store.appendEvents(Events(job: l.job, attempt: 1, events: evs), worker: "w1", now: 5), 2)
        XCTAssertEqual(try store.appendEvents(Events(job: l.job, attempt: 1, events: [
            EventRecord(seq: 3, at_ms: 4, event: ["event": "eval", "loss": 2.8, "kl": 0.375]),
        ]), worker: "w1", now: 6), 3)
        let r = try store.results(sweep: 1, sort: nil)[0]
        XCTAssertEqual(r.final_val_loss, 2.8)
        XCTAssertEqual(r.metrics, ["baseline_loss": 2.5, "baseline_general_loss": 2.75, "kl": 0.375, "top1_agreement": 0.75],
                       "prune_eval is not the job's own N; keep, step, loss and tokens are not metrics")
        XCTAssertEqual(try store.jobDetail(l.job).job.metrics, r.metrics)
        try store.finish(AttemptRef(job: l.job, attempt: 1), worker: "w1", outcome: .failed("boom"), now: 7, policy: policy)
        let again = try XCTUnwrap(store.leaseNext(worker: "w2", request: cpu, now: 1_000_000, policy: policy))
        XCTAssertEqual(again.job, l.job)
        XCTAssertNil(try store.results(sweep: 1, sort: nil)[0].metrics, "a new lease starts the summary over")
    }

    func testCancelStopsRunningAndQueuedJobs() throws {
        try submit("i: [1, 2]")
        let l = try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: 0, policy: policy))
        let (n, running) = try store.cancel(CancelRequest(sweep: 1), now: 1)
        XCTAssertEqual(n, 2)
        XCTAssertEqual(running.map(\.0), [AttemptRef(job: l.job, attempt: 1)])
        XCTAssertThrowsError(try store.finish(AttemptRef(job: l.job, attempt: 1), worker: "w1", outcome: .succeeded, now: 2, policy: policy))
        XCTAssertNil(try store.leaseNext(worker: "w1", request: cpu, now: 3, policy: policy))
        XCTAssertThrowsError(try store.cancel(CancelRequest(sweep: 99), now: 4))
    }

    func testSweepIsStoredWholeAndJobCountIsExact() throws {
        let s = try submit("a: [1, 2, 3]\nb: [x, y]")
        XCTAssertEqual(s.jobs, 6)
        XCTAssertEqual(try store.sweeps()[0].jobs, 6)
        XCTAssertEqual(try store.results(sweep: s.sweep, sort: nil).map(\.index), Array(0..<6))
    }

    /// `tuna sweeps` reads counts the triggers on `jobs` keep; they must equal a count of the
    /// jobs themselves after every kind of status change.
    func testSweepCountsFollowEveryStatusChange() throws {
        try submit("i: [1, 2, 3, 4]\nmax_attempts: 1")
        try submit("j: [1, 2]")
        func agree(_ step: String) throws {
            let direct = try store.db.db.read { db in
                try Row.fetchAll(db, sql: "SELECT sweep_id, status, COUNT(*) FROM jobs GROUP BY sweep_id, status")
                    .reduce(into: [Int64: [String: Int]]()) { $0[$1[0], default: [:]][$1[1]] = $1[2] }
            }
            for row in try store.sweeps() {
                let d = direct[row.id] ?? [:]
                XCTAssertEqual([row.jobs, row.queued, row.running, row.succeeded, row.failed, row.cancelled],
                               [d.values.reduce(0, +), d["queued"] ?? 0, d["running"] ?? 0, d["succeeded"] ?? 0, d["failed"] ?? 0, d["cancelled"] ?? 0],
                               "sweep \(row.id) after \(step)")
            }
        }
        try agree("submit")
        let a = try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: 0, policy: policy))
        let b = try XCTUnwrap(store.leaseNext(worker: "w2", request: cpu, now: 0, policy: policy))
        try agree("two leases")
        try store.finish(AttemptRef(job: a.job, attempt: a.attempt), worker: "w1", outcome: .succeeded, now: 1, policy: policy)
        try store.finish(AttemptRef(job: b.job, attempt: b.attempt), worker: "w2", outcome: .failed("boom"), now: 1, policy: policy)
        try agree("a success and a failure")
        _ = try store.renew(worker: "w1", leases: [], now: 2, policy: policy)
        let c = try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: 2, policy: policy))
        _ = try store.renew(worker: "w1", leases: [AttemptRef(job: c.job, attempt: c.attempt)], now: 3, policy: policy)
        _ = try store.expireLeases(now: 10_000, policy: policy)
        try agree("an expired lease")
        _ = try store.cancel(CancelRequest(sweep: 2), now: 10_001)
        try agree("cancel")
        _ = try store.retry(sweep: 1)
        _ = try store.retry(sweep: 2)
        try agree("retry")
    }

    /// A coordinator killed while it stored a large sweep left a prefix of its jobs and the
    /// sweep marked `expanding`; the next start stores the rest: every job once, in order, with
    /// the parameters a whole submit would have stored. A sweep cancelled meanwhile gets its
    /// remaining jobs as cancelled.
    func testAnInterruptedSubmitIsFinishedAtStartAndACancelHolds() throws {
        let n = Store.jobsPerChunk * 2 + 123
        let yaml = "name: big\ntrainer: command\ncommand: [x]\na: [\((0..<n).map(String.init).joined(separator: ","))]"
        let plan = try SweepSpec.plan(yaml: yaml)
        let whole = try store.insertSweep(plan, specYAML: yaml, now: 0)
        let raw = store.db
        let expected = try store.db.db.read { try Row.fetchAll($0, sql: "SELECT idx, params_hash, params FROM jobs ORDER BY idx").map { "\($0[0] as Int) \($0[1] as String) \($0[2] as String)" } }
        for (cut, cancelled) in [(Store.jobsPerChunk, false), (0, false), (Store.jobsPerChunk * 2, true)] {
            let cutSweep = try store.insertSweep(plan, specYAML: yaml, now: 0).sweep
            try store.db.db.write { db in
                try db.execute(sql: "DELETE FROM jobs WHERE sweep_id = ? AND idx >= ?", arguments: [cutSweep, cut])
                try db.execute(sql: "UPDATE sweeps SET expanding = 1 WHERE id = ?", arguments: [cutSweep])
            }
            if cancelled { _ = try store.cancel(CancelRequest(sweep: cutSweep), now: 1) }
            XCTAssertEqual(try block { try await raw.resumeExpansion(now: 2) }, [cutSweep])
            let stored = try store.db.db.read { db in
                try Row.fetchAll(db, sql: "SELECT idx, params_hash, params, status FROM jobs WHERE sweep_id = ? ORDER BY idx", arguments: [cutSweep])
            }
            XCTAssertEqual(stored.map { "\($0[0] as Int) \($0[1] as String) \($0[2] as String)" }, expected, "cut at \(cut)")
            XCTAssertEqual(Set(stored.map { $0[3] as String }), [cancelled ? "cancelled" : "queued"], "cut at \(cut)")
            XCTAssertEqual(try block { try await raw.resumeExpansion(now: 3) }, [], "nothing left expanding")
        }
        XCTAssertEqual(try store.sweeps().map(\.jobs), Array(repeating: n, count: 4))
        XCTAssertEqual(whole.jobs, n)
    }

    /// A sweep's objective can name any eval field: its value is the field at the job's last
    /// eval, `sort: objective` puts the best first by the sweep's mode, jobs without one last.
    func testResultsSortByTheSweepsObjective() throws {
        let yaml = "name: s\ntrainer: command\ncommand: [x]\nobjective: {metric: accuracy, mode: max}\ni: [1, 2, 3]"
        let s = try store.insertSweep(try SweepSpec.plan(yaml: yaml), specYAML: yaml, now: 0)
        for (k, accuracy) in [(0, [0.5, 0.7]), (1, [0.9, 0.6])] {
            let l = try XCTUnwrap(store.leaseNext(worker: "w\(k + 1)", request: cpu, now: 0, policy: policy))
            let events = accuracy.enumerated().map { EventRecord(seq: Int64($0.offset), at_ms: 0, event: ["event": "eval", "loss": 1.0, "tokens": 10, "accuracy": .number($0.element)]) }
            _ = try store.appendEvents(Events(job: l.job, attempt: l.attempt, events: events), worker: "w\(k + 1)", now: 1)
        }
        let rows = try store.results(sweep: s.sweep, sort: "objective")
        XCTAssertEqual(rows.map(\.objective), [0.7, 0.6, nil], "the last eval's value, highest first, none last")
        XCTAssertEqual(rows.map(\.index), [0, 1, 2])
        XCTAssertEqual(try store.sweeps().first?.objective, Objective(metric: "accuracy", mode: .max))
        XCTAssertEqual(try store.jobDetail(rows[0].id).job.objective, 0.7)
    }

    /// Early stopping through the store, on a hand-made order of evals: a rung is judged again
    /// each time a job records there, so a job that went on while too few had reached it is
    /// stopped once enough have; finished jobs are never stopped; a stopped attempt's late
    /// events and result are refused; evals without a step do not count.
    func testEarlyStoppingJudgesEachRungAgainAsJobsArrive() throws {
        for w in ["w3", "w4"] {
            _ = try store.upsertWorker(Register(worker_id: w, name: w, capabilities: Capabilities(hostname: w, trainers: ["command"], gpus: [], cpu_cores: 2, ram_gb: 8),
                                                max_jobs: 1, running: []), now: 0)
        }
        let yaml = "name: s\ntrainer: command\ncommand: [x]\ni: [1, 2, 3, 4]\nsweep: {early_stopping: {type: asha, mode: stopping, grace_steps: 10, max_steps: 100, reduction_factor: 2}}"
        _ = try store.insertSweep(try SweepSpec.plan(yaml: yaml), specYAML: yaml, now: 0)
        var leases: [Lease] = []
        for w in ["w1", "w2", "w3", "w4"] { leases.append(try XCTUnwrap(store.leaseNext(worker: w, request: cpu, now: 0, policy: policy))) }
        func eval(_ k: Int, step: Int?, loss: Double, seq: Int64) throws -> [(ref: AttemptRef, worker: String, reason: String)] {
            var fields: [String: JSONValue] = ["event": "eval", "loss": .number(loss), "tokens": 1]
            if let step { fields["step"] = .int(step) }
            let e = JSONValue.object(fields)
            let batch = Events(job: leases[k].job, attempt: leases[k].attempt, events: [EventRecord(seq: seq, at_ms: 0, event: e)])
            let raw: Store = store.db
            return try block { try await raw.ingest(batch, worker: "w\(k + 1)", now: 1).stopped }
        }
        // Job 3 finishes before anyone reaches a rung: a finished job is never stopped.
        try store.finish(AttemptRef(job: leases[3].job, attempt: 1), worker: "w4", outcome: .succeeded, now: 1, policy: policy)
        XCTAssertEqual(try eval(0, step: nil, loss: 9, seq: 0).count, 0, "an eval without a step records nothing")
        XCTAssertEqual(try eval(0, step: 10, loss: 1.0, seq: 1).count, 0, "one value at rung 10: no top half yet")
        let first = try eval(1, step: 11, loss: 2.0, seq: 0)
        XCTAssertEqual(first.map(\.ref.job), [leases[1].job], "two values: job 1 is not in the best half")
        XCTAssertEqual(first.first?.reason, "stopped at step 11: val_loss 2 not in the top 1/2 of 2 jobs at rung 10 (cut 1)")
        let second = try eval(2, step: 12, loss: 0.5, seq: 0)
        XCTAssertEqual(second.map(\.ref.job), [leases[0].job], "three values: job 0 went on earlier and is stopped now")
        XCTAssertEqual(try store.sweeps()[0].stopped, 2)
        let statuses = try store.results(sweep: 1, sort: nil).map(\.status)
        XCTAssertEqual(statuses, [.stopped, .stopped, .running, .succeeded])
        XCTAssertEqual(try store.jobDetail(leases[0].job).attempts.map(\.state), ["stopped"])
        // The stopped attempts' late events and results are refused (fencing).
        XCTAssertThrowsError(try eval(1, step: 20, loss: 0.1, seq: 1))
        XCTAssertThrowsError(try store.finish(AttemptRef(job: leases[0].job, attempt: 1), worker: "w1", outcome: .succeeded, now: 2, policy: policy))
        // A retry of the sweep does not requeue what early stopping decided.
        XCTAssertEqual(try store.retry(sweep: 1), 0)
    }

    /// ASHA in promotion mode, step by step on a hand-made order of evals (eta 2: rungs 10, 20,
    /// 40, 80): pauses at the asked rung, promotion of the best paused job as soon as it
    /// qualifies (and before any job that never ran), a pause at another step refused, a
    /// trainer that ignores the pause succeeding, and the paused jobs that can never be promoted
    /// stopped once nothing is left to run, each decision stored with its reason.
    func testPromotionPausesAtRungsPromotesTheBestAndStopsTheRestWhenNothingIsLeft() throws {
        _ = try store.upsertWorker(Register(worker_id: "w3", name: "w3", capabilities: Capabilities(hostname: "w3", trainers: ["command"], gpus: [], cpu_cores: 2, ram_gb: 8),
                                            max_jobs: 1, running: []), now: 0)
        try submit("i: [1, 2, 3, 4]\nsweep: {early_stopping: {type: asha, grace_steps: 10, max_steps: 100, reduction_factor: 2}}")
        let raw: Store = store.db
        func lease(_ w: String, now: Int64 = 1) throws -> Lease { try XCTUnwrap(store.leaseNext(worker: w, request: cpu, now: now, policy: policy)) }
        func pause(_ l: Lease, _ w: String, step: Int, loss: Double, now: Int64 = 1) throws {
            let e: JSONValue = ["event": "eval", "step": .int(step), "loss": .number(loss), "tokens": 1]
            let batch = Events(job: l.job, attempt: l.attempt, events: [EventRecord(seq: 0, at_ms: 0, event: e)])
            _ = try block { try await raw.ingest(batch, worker: w, now: now) }
            try store.pause(AttemptRef(job: l.job, attempt: l.attempt), worker: w, step: step, now: now, policy: policy)
        }
        func statuses() throws -> [JobStatus] { try store.results(sweep: 1, sort: nil).map(\.status) }
        let (j1, j2, j3) = (try lease("w1"), try lease("w2"), try lease("w3"))
        XCTAssertEqual([j1, j2, j3].map { $0.spec["pause_at_step"] }, [10, 10, 10])
        try pause(j1, "w1", step: 10, loss: 1.0)
        XCTAssertEqual(try statuses(), [.paused, .running, .running, .queued], "one value at rung 10: nobody is promoted")
        XCTAssertEqual(try store.sweeps()[0].paused, 1)
        try pause(j2, "w2", step: 10, loss: 2.0)
        XCTAssertEqual(try statuses(), [.queued, .paused, .running, .queued], "two values: job 1 is the best half and promoted")
        let j1b = try lease("w1")
        XCTAssertEqual(j1b.job, j1.job, "a promoted job goes before the jobs that never ran")
        XCTAssertEqual(j1b.spec["pause_at_step"], 20)
        try pause(j3, "w3", step: 10, loss: 0.5)
        XCTAssertEqual(try statuses(), [.running, .paused, .queued, .queued], "three values, keep 1: job 3 is promoted, job 2 stays")
        // A pause before the asked step fails the attempt.
        try store.pause(AttemptRef(job: j1b.job, attempt: j1b.attempt), worker: "w1", step: 15, now: 1, policy: policy)
        XCTAssertEqual(try store.jobDetail(j1.job).attempts.last?.error, "the trainer paused at step 15, but was asked to pause at step 20")
        let (j1c, j3b) = (try lease("w2", now: 1_000), try lease("w3", now: 1_000))
        XCTAssertEqual([j1c.job, j3b.job], [j1.job, j3.job])
        XCTAssertEqual([j1c.spec["pause_at_step"], j3b.spec["pause_at_step"]], [20, 20])
        try pause(j1c, "w2", step: 20, loss: 0.8, now: 1_000)
        try pause(j3b, "w3", step: 20, loss: 0.4, now: 1_000)
        let j3c = try lease("w1", now: 1_000)
        XCTAssertEqual(j3c.job, j3.job)
        XCTAssertEqual(j3c.spec["pause_at_step"], 40)
        // A trainer that ignores the pause and finishes has finished.
        try store.finish(AttemptRef(job: j3c.job, attempt: j3c.attempt), worker: "w1", outcome: .succeeded, now: 1_000, policy: policy)
        XCTAssertEqual(try statuses(), [.paused, .paused, .succeeded, .queued], "job 4 never ran: the sweep goes on")
        let j4 = try lease("w2", now: 1_000)
        try pause(j4, "w2", step: 10, loss: 5.0, now: 1_000)
        XCTAssertEqual(try statuses(), [.stopped, .stopped, .succeeded, .stopped], "nothing left to run: the paused jobs are stopped")
        XCTAssertEqual(try store.jobDetail(j1.job).decisions?.map(\.kind), [.paused, .promoted, .paused, .stopped])
        XCTAssertEqual(try store.jobDetail(j1.job).decisions?.map(\.reason), [
            "paused at step 10: val_loss 1, waiting for the rung to be judged",
            "promoted at step 10: val_loss 1 in the top 1/2 of 2 jobs at rung 10 (cut 1)",
            "paused at step 20: val_loss 0.8, waiting for the rung to be judged",
            "stopped at step 20: val_loss 0.8 not in the top 1/2 of 2 jobs at rung 20 (cut 0.4); the sweep has nothing left to run",
        ])
        XCTAssertEqual(try store.results(sweep: 1, sort: nil)[3].error,
                       "stopped at step 10: val_loss 5 not in the top 1/2 of 4 jobs at rung 10 (cut 1); the sweep has nothing left to run")
        // Late results of an attempt that paused are refused (fencing), and nothing is requeued by a retry.
        XCTAssertThrowsError(try store.finish(AttemptRef(job: j2.job, attempt: j2.attempt), worker: "w2", outcome: .succeeded, now: 2_000, policy: policy))
        XCTAssertEqual(try store.retry(sweep: 1), 0)
        XCTAssertEqual(try raw.decisions(sweep: 1).count, 12)
    }

    /// A job goes past a rung only by promotion: an attempt that recorded the rung's eval but
    /// failed before it paused is asked to pause there again. A pause is taken where asked and
    /// with a checkpoint: past the rung only by a trainer that resumed there and paused at once.
    func testAJobPassesARungOnlyByPromotion() throws {
        try submit("i: [1, 2, 3]\nmax_attempts: 6\nsweep: {early_stopping: {type: asha, grace_steps: 10, max_steps: 100}}")
        policy.quarantineAfter = 10
        let raw: Store = store.db
        func event(_ l: Lease, _ e: JSONValue, seq: Int64 = 0) throws {
            _ = try block { try await raw.ingest(Events(job: l.job, attempt: l.attempt, events: [EventRecord(seq: seq, at_ms: 0, event: e)]), worker: "w1", now: 1) }
        }
        var now: Int64 = 1
        func again() throws -> Lease {
            now += 10_000
            return try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: now, policy: policy))
        }
        let l = try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: 1, policy: policy))
        try event(l, ["event": "eval", "step": 10, "loss": 0.5, "tokens": 1])
        try store.finish(AttemptRef(job: l.job, attempt: 1), worker: "w1", outcome: .failed("upload failed"), now: 1, policy: policy)
        let l2 = try again()
        XCTAssertEqual(l2.job, l.job)
        XCTAssertEqual(l2.spec["pause_at_step"], 10, "not promoted from rung 10: it pauses there again")
        try store.pause(AttemptRef(job: l.job, attempt: 2), worker: "w1", step: 12, now: now, policy: policy)
        XCTAssertEqual(try store.jobDetail(l.job).attempts.last?.error, "the trainer paused at step 12, but was asked to pause at step 10")
        let l3 = try again()
        try store.pause(AttemptRef(job: l.job, attempt: l3.attempt), worker: "w1", step: 10, now: now, policy: policy, checkpoint: false)
        XCTAssertEqual(try store.jobDetail(l.job).attempts.last?.error,
                       "the trainer paused at step 10 without a checkpoint to resume from ($TUNA_CHECKPOINT_DIR was empty)")
        let l4 = try again()
        try event(l4, ["event": "resumed", "step": 11])
        try store.pause(AttemptRef(job: l.job, attempt: l4.attempt), worker: "w1", step: 12, now: now, policy: policy)
        XCTAssertEqual(try store.jobDetail(l.job).attempts.last?.error,
                       "the trainer paused at step 12, but was asked to pause at step 10 (it resumed at step 11)")
        // Resumed from a checkpoint at step 12 (past the rung): it pauses at once, and that is a pause at the rung.
        let l5 = try again()
        XCTAssertEqual(l5.attempt, 5)
        try event(l5, ["event": "resumed", "step": 12])
        try store.pause(AttemptRef(job: l.job, attempt: 5), worker: "w1", step: 12, now: now, policy: policy)
        let d = try store.jobDetail(l.job)
        XCTAssertEqual(d.job.status, .paused)
        XCTAssertEqual(d.decisions?.map(\.rung), [10])
        XCTAssertEqual(d.decisions?.first?.reason, "paused at step 12: val_loss 0.5, waiting for the rung to be judged")
    }

    /// A paused job cancelled at a rung does not keep its place among the rung's best: the
    /// next best is promoted as if it had never run.
    func testACancelledPausedJobHoldsNoPromotionSlot() throws {
        try submit("i: [1, 2, 3, 4]\nsweep: {early_stopping: {type: asha, grace_steps: 10, max_steps: 100, reduction_factor: 2}}")
        let raw: Store = store.db
        func pauseNext(loss: Double) throws -> Lease {
            let l = try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: 1, policy: policy))
            let e: JSONValue = ["event": "eval", "step": 10, "loss": .number(loss), "tokens": 1]
            _ = try block { try await raw.ingest(Events(job: l.job, attempt: l.attempt, events: [EventRecord(seq: 0, at_ms: 0, event: e)]), worker: "w1", now: 1) }
            try store.pause(AttemptRef(job: l.job, attempt: l.attempt), worker: "w1", step: 10, now: 1, policy: policy)
            return l
        }
        let best = try pauseNext(loss: 0.5)
        _ = try store.cancel(CancelRequest(sweep: nil, job: best.job), now: 1)
        _ = try pauseNext(loss: 1.0)
        XCTAssertEqual(try store.results(sweep: 1, sort: nil).map(\.status), [.cancelled, .paused, .queued, .queued])
        _ = try pauseNext(loss: 2.0)
        XCTAssertEqual(try store.results(sweep: 1, sort: nil).map(\.status), [.cancelled, .queued, .paused, .queued],
                       "2 values count at rung 10 (the cancelled job's does not): the best half is job 2")
        XCTAssertEqual(try store.jobDetail(2).decisions?.last?.reason, "promoted at step 10: val_loss 1 in the top 1/2 of 2 jobs at rung 10 (cut 1)")
    }

    /// Cancelling a promoting sweep cancels its paused jobs too; cancelling its last live job
    /// settles it.
    func testCancellingAPromotingSweepCancelsItsPausedJobs() throws {
        try submit("i: [1, 2, 3]\nsweep: {early_stopping: {type: asha, grace_steps: 10, max_steps: 100}}")
        let l = try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: 1, policy: policy))
        try store.pause(AttemptRef(job: l.job, attempt: l.attempt), worker: "w1", step: 10, now: 1, policy: policy)
        XCTAssertEqual(try store.jobDetail(l.job).decisions?.first?.reason, "paused at step 10: no val_loss at this rung, so it cannot be promoted")
        _ = try store.cancel(CancelRequest(sweep: nil, job: 2), now: 2)
        XCTAssertEqual(try store.results(sweep: 1, sort: nil).map(\.status), [.paused, .cancelled, .queued])
        _ = try store.cancel(CancelRequest(sweep: 1, job: nil), now: 3)
        XCTAssertEqual(try store.results(sweep: 1, sort: nil).map(\.status), [.cancelled, .cancelled, .cancelled])
    }

    /// The median rule stops a running job whose best is worse than the median of the
    /// completed jobs' running averages at the same step.
    func testTheMedianRuleStopsAJobBehindTheCompletedOnes() throws {
        try submit("i: [1, 2, 3]\nsweep: {early_stopping: {type: median, grace_steps: 10, max_steps: 100, min_completed: 2}}")
        let raw: Store = store.db
        func eval(_ l: Lease, _ w: String, _ points: [(Int, Double)], seq: Int64 = 0) throws -> [Store.StoppedAttempt] {
            let events = points.enumerated().map { i, p in
                EventRecord(seq: seq + Int64(i), at_ms: 0, event: ["event": "eval", "step": .int(p.0), "loss": .number(p.1), "tokens": 1])
            }
            let batch = Events(job: l.job, attempt: l.attempt, events: events)
            return try block { try await raw.ingest(batch, worker: w, now: 1).stopped }
        }
        for (w, curve) in [("w1", [(10, 1.0), (20, 0.6)]), ("w2", [(10, 2.0), (20, 1.2)])] {
            let l = try XCTUnwrap(store.leaseNext(worker: w, request: cpu, now: 1, policy: policy))
            XCTAssertEqual(try eval(l, w, curve).count, 0, "nothing is judged before two jobs completed")
            try store.finish(AttemptRef(job: l.job, attempt: l.attempt), worker: w, outcome: .succeeded, now: 1, policy: policy)
        }
        let l = try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: 1, policy: policy))
        XCTAssertEqual(try eval(l, "w1", [(10, 1.4)]).count, 0, "1.4 beats the median 1.5 of the averages 1.0 and 2.0")
        let stopped = try eval(l, "w1", [(20, 1.3)], seq: 1)
        XCTAssertEqual(stopped.map(\.reason), ["stopped at step 20: best val_loss 1.3 worse than the median 1.2 of the running averages of 2 completed jobs"])
        XCTAssertEqual(try store.results(sweep: 1, sort: nil).map(\.status), [.succeeded, .succeeded, .stopped])
    }

    /// What the coordinator checks a heartbeat's free GPUs against: the attempts running on a
    /// worker, and no longer once they end.
    func testRunningAttemptsAreAWorkersOwnUntilTheyEnd() throws {
        let yaml = "name: s\ntrainer: command\ncommand: [x]\nx: [1, 2, 3]"
        try store.insertSweep(try SweepSpec.plan(yaml: yaml), specYAML: yaml, now: 0)
        let raw: Store = store.db
        let a = try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: 1, policy: policy))
        let b = try XCTUnwrap(store.leaseNext(worker: "w2", request: cpu, now: 1, policy: policy))
        let c = try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: 1, policy: policy))
        XCTAssertEqual(try raw.runningAttempts(worker: "w1"), [AttemptRef(job: a.job, attempt: a.attempt), AttemptRef(job: c.job, attempt: c.attempt)])
        XCTAssertEqual(try raw.runningAttempts(worker: "w2"), [AttemptRef(job: b.job, attempt: b.attempt)])
        try store.finish(AttemptRef(job: a.job, attempt: a.attempt), worker: "w1", outcome: .succeeded, now: 2, policy: policy)
        XCTAssertEqual(try raw.runningAttempts(worker: "w1"), [AttemptRef(job: c.job, attempt: c.attempt)])
        XCTAssertEqual(try raw.runningAttempts(worker: "nobody"), [])
    }

    /// A TPE sweep's jobs past `startup` are proposed when first leased, from the results so
    /// far (running jobs as bad), and the proposal is stored, leased and explained.
    func testATPESweepProposesEachJobPastStartupFromTheResultsSoFar() throws {
        let yaml = "name: s\ntrainer: command\ncommand: [x]\nx: {uniform: [0, 1]}\nsweep: {method: tpe, count: 5, startup: 2, seed: 9}"
        try store.insertSweep(try SweepSpec.plan(yaml: yaml), specYAML: yaml, now: 0)
        let raw: Store = store.db
        let space = try SweepSpec.searchSpace(yaml: yaml)
        func lease(_ w: String) throws -> Lease { try XCTUnwrap(store.leaseNext(worker: w, request: cpu, now: 1, policy: policy)) }
        func succeed(_ l: Lease, _ w: String) throws -> Double {
            let x = try XCTUnwrap(l.spec["x"]?.doubleValue)
            let e: JSONValue = ["event": "eval", "step": 1, "loss": .number((x - 0.3) * (x - 0.3)), "tokens": 1]
            let batch = Events(job: l.job, attempt: l.attempt, events: [EventRecord(seq: 0, at_ms: 0, event: e)])
            _ = try block { try await raw.ingest(batch, worker: w, now: 1) }
            try store.finish(AttemptRef(job: l.job, attempt: l.attempt), worker: w, outcome: .succeeded, now: 1, policy: policy)
            return x
        }
        let draws = try store.results(sweep: 1, sort: nil).map { $0.params["x"] }
        let (j0, j1) = (try lease("w1"), try lease("w2"))
        XCTAssertEqual([j0.spec["x"], j1.spec["x"]], Array(draws.prefix(2)), "before startup: the random draws")
        XCTAssertEqual(try store.jobDetail(j0.job).decisions, [])
        let x0 = try succeed(j0, "w1"), x1 = try succeed(j1, "w2")
        let done = [TPE.Observation(point: [.number(x0)], value: (x0 - 0.3) * (x0 - 0.3)),
                    TPE.Observation(point: [.number(x1)], value: (x1 - 0.3) * (x1 - 0.3))]
        let j2 = try lease("w1")
        let want2 = try XCTUnwrap(TPE.propose(axes: space.axes, observations: done, objective: .default, startup: 2, seed: 9, index: 2))
        XCTAssertEqual(j2.spec["x"], want2[0])
        XCTAssertNotEqual(j2.spec["x"], draws[2], "proposed, not drawn")
        XCTAssertEqual(try store.results(sweep: 1, sort: nil)[2].params["x"], want2[0], "the proposal is what the job shows")
        XCTAssertEqual(try store.jobDetail(j2.job).decisions?.map(\.reason), ["proposed by TPE from 2 result(s) and 0 running or stopped: x=\(want2[0].canonicalJSON)"])
        let j3 = try lease("w2")
        let want3 = try XCTUnwrap(TPE.propose(axes: space.axes, observations: done + [TPE.Observation(point: want2, value: nil)],
                                              objective: .default, startup: 2, seed: 9, index: 3))
        XCTAssertEqual(j3.spec["x"], want3[0], "job 2, still running, counts as a bad result")
    }

    /// `tuna sweep extend`: a random sweep draws on where it stopped (the stored jobs are the
    /// first draws of the longer sweep); a grid and a cancelled sweep are refused.
    func testExtendingARandomSweepDrawsOnWhereItStopped() throws {
        let yaml = "name: s\ntrainer: command\ncommand: [x]\nx: {uniform: [0, 1]}\nsweep: {method: random, count: 3, seed: 4}"
        try store.insertSweep(try SweepSpec.plan(yaml: yaml), specYAML: yaml, now: 0)
        let raw: Store = store.db
        let added = try block { try await raw.extendSweep(1, by: 2, now: 1) }
        XCTAssertEqual(added.jobs, 2)
        let rows = try store.results(sweep: 1, sort: nil)
        let longer = try SweepSpec.plan(yaml: yaml.replacingOccurrences(of: "count: 3", with: "count: 5"))
        XCTAssertEqual(rows.map { $0.params["x"] }, (0..<5).map { longer.jobs[$0].varying["x"] })
        XCTAssertEqual(rows.map(\.index), [0, 1, 2, 3, 4])
        XCTAssertEqual(try store.sweeps()[0].jobs, 5)
        XCTAssertEqual(try store.sweeps()[0].queued, 5)
        try submit("i: [1, 2]")
        XCTAssertThrowsError(try block { try await raw.extendSweep(2, by: 1, now: 1) }) {
            XCTAssert("\($0)".contains("only random and TPE sweeps can be extended"), "\($0)")
        }
        _ = try store.cancel(CancelRequest(sweep: 1), now: 2)
        XCTAssertThrowsError(try block { try await raw.extendSweep(1, by: 1, now: 3) }) {
            XCTAssert("\($0)".contains("was cancelled"), "\($0)")
        }
        XCTAssertThrowsError(try block { try await raw.extendSweep(9, by: 1, now: 3) })
    }

    /// `sweep.max_steps_total`: attempts reserve their steps at lease; a job that does not fit
    /// waits while running jobs may give steps back, and is stopped once none can.
    func testAStepBudgetIsNeverExceeded() throws {
        _ = try store.upsertWorker(Register(worker_id: "w3", name: "w3", capabilities: Capabilities(hostname: "w3", trainers: ["native"], gpus: [], cpu_cores: 2, ram_gb: 8),
                                            max_jobs: 1, running: []), now: 0)
        let yaml = "name: b\ntrainer: native\nmodel: m\ndataset: {path: d.jsonl}\ntrain: {max_steps: 10, learning_rate: [0.1, 0.2, 0.3, 0.4]}\nsweep: {max_steps_total: 25}"
        try store.insertSweep(try SweepSpec.plan(yaml: yaml), specYAML: yaml, now: 0)
        let raw: Store = store.db
        let native = JobRequest(free_gpus: [], trainers: ["native"])
        func lease(_ w: String) throws -> Lease? { try store.leaseNext(worker: w, request: native, now: 1, policy: policy) }
        func train(_ l: Lease, _ w: String, steps: Int) throws {
            let events = (1...steps).map { EventRecord(seq: Int64($0), at_ms: 0, event: ["event": "step", "step": .int($0), "loss": 1, "tokens": 1]) }
            _ = try block { try await raw.ingest(Events(job: l.job, attempt: l.attempt, events: events), worker: w, now: 1) }
            try store.finish(AttemptRef(job: l.job, attempt: l.attempt), worker: w, outcome: .succeeded, now: 1, policy: policy)
        }
        let a = try XCTUnwrap(lease("w1")), b = try XCTUnwrap(lease("w2"))
        XCTAssertNil(try lease("w3"), "10 + 10 reserved; a third 10 would pass 25")
        try train(a, "w1", steps: 3)   // gave 7 of its 10 back
        let c = try XCTUnwrap(lease("w3"), "3 trained + 10 reserved + 10 fits in 25")
        XCTAssertNil(try lease("w1"), "job 4 waits: 3 + 20 reserved + 10 > 25, but the running jobs may give steps back")
        XCTAssertEqual(try store.results(sweep: 1, sort: nil)[3].status, .queued)
        try train(b, "w2", steps: 10)
        try train(c, "w3", steps: 10)
        XCTAssertNil(try lease("w1"))
        let last = try store.results(sweep: 1, sort: nil)[3]
        XCTAssertEqual(last.status, .stopped, "23 trained: 10 more can never fit")
        XCTAssertEqual(last.error, "stopped before step 10: the sweep's step budget of 25 is spent (23 trained; this attempt needs 10)")
        XCTAssertEqual(try store.jobDetail(last.id).decisions?.map(\.kind), [.stopped])
    }

    /// An ended attempt is charged what it trained, past its reservation too (the overrun is
    /// never hidden), and its reservation when it ended well without reporting a step.
    func testAStepBudgetChargesWhatWasTrained() throws {
        let yaml = "name: b\ntrainer: native\nmodel: m\ndataset: {path: d.jsonl}\ntrain: {max_steps: 10, learning_rate: [0.1, 0.2, 0.3]}\nsweep: {max_steps_total: 25}"
        try store.insertSweep(try SweepSpec.plan(yaml: yaml), specYAML: yaml, now: 0)
        let raw: Store = store.db
        let native = JobRequest(free_gpus: [], trainers: ["native"])
        func lease() throws -> Lease? { try store.leaseNext(worker: "w1", request: native, now: 1, policy: policy) }
        let a = try XCTUnwrap(lease())
        try store.finish(AttemptRef(job: a.job, attempt: 1), worker: "w1", outcome: .succeeded, now: 1, policy: policy)
        // Job 2 resumed at step 2 (from where, the store need not know) and trained to 14: 12 steps, 2 over its 10.
        let b = try XCTUnwrap(lease())
        let events = [EventRecord(seq: 0, at_ms: 0, event: ["event": "resumed", "step": 2])]
            + (3...13).map { EventRecord(seq: Int64($0), at_ms: 0, event: ["event": "step", "step": .int($0), "loss": 1, "tokens": 1]) }
            + [EventRecord(seq: 14, at_ms: 0, event: ["event": "checkpoint", "step": 14])]
        _ = try block { try await raw.ingest(Events(job: b.job, attempt: 1, events: events), worker: "w1", now: 1) }
        try store.finish(AttemptRef(job: b.job, attempt: 1), worker: "w1", outcome: .succeeded, now: 1, policy: policy)
        XCTAssertNil(try lease())
        XCTAssertEqual(try store.results(sweep: 1, sort: nil)[2].error,
                       "stopped before step 10: the sweep's step budget of 25 is spent (22 trained; this attempt needs 10)")
    }

    /// A budgeted sweep that must wait for its next job (a promotion) is passed over whole: its
    /// new jobs, which would fit, do not take the promotion's steps, and another sweep is served.
    func testASweepWaitingOnItsBudgetIsPassedOverWhole() throws {
        let base = "trainer: native\nmodel: m\ndataset: {path: d.jsonl}\n"
        let a = "name: a\n" + base + "train: {max_steps: 30, learning_rate: [0.1, 0.2, 0.3, 0.4, 0.5]}\n"
            + "sweep: {max_steps_total: 55, early_stopping: {type: asha, grace_steps: 10, max_steps: 30, reduction_factor: 3}}"
        try store.insertSweep(try SweepSpec.plan(yaml: a), specYAML: a, now: 0)
        let b = "name: b\n" + base + "train: {max_steps: 30}"
        try store.insertSweep(try SweepSpec.plan(yaml: b), specYAML: b, now: 0)
        let raw: Store = store.db
        let native = JobRequest(free_gpus: [], trainers: ["native"])
        func lease(_ w: String = "w1", now: Int64 = 1) throws -> Lease? { try store.leaseNext(worker: w, request: native, now: now, policy: policy) }
        func train(_ l: Lease, steps: Int, loss: Double) throws {
            let events = (1...steps).map { EventRecord(seq: Int64($0), at_ms: 0, event: ["event": "step", "step": .int($0), "loss": 1, "tokens": 1]) }
                + [EventRecord(seq: Int64(steps + 1), at_ms: 0, event: ["event": "eval", "step": .int(steps), "loss": .number(loss), "tokens": 1])]
            _ = try block { try await raw.ingest(Events(job: l.job, attempt: l.attempt, events: events), worker: "w1", now: 1) }
        }
        let first = try (0..<4).map { _ in try XCTUnwrap(lease()) }
        XCTAssertEqual(first.map(\.sweep), [1, 1, 1, 1])
        for (l, loss) in zip(first.prefix(3), [0.5, 0.7, 0.9]) {
            try train(l, steps: 10, loss: loss)
            try store.pause(AttemptRef(job: l.job, attempt: l.attempt), worker: "w1", step: 10, now: 1, policy: policy)
        }
        // 30 trained, 10 reserved by job 4: job 1's promotion needs 20 (60 > 55, and it may fit
        // later); job 5's 10 would fit now, but would take the promotion's steps.
        XCTAssertEqual(try store.results(sweep: 1, sort: nil).map(\.status), [.queued, .paused, .paused, .running, .queued])
        let other = try XCTUnwrap(lease())
        XCTAssertEqual(other.sweep, 2, "sweep 1 is passed over; sweep 2 is served")
        XCTAssertNil(try lease())
        // Job 4 fails after 2 steps: 32 trained, and the promotion fits.
        let events = (1...2).map { EventRecord(seq: Int64($0), at_ms: 0, event: ["event": "step", "step": .int($0), "loss": 1, "tokens": 1]) }
        _ = try block { try await raw.ingest(Events(job: first[3].job, attempt: 1, events: events), worker: "w1", now: 1) }
        try store.finish(AttemptRef(job: first[3].job, attempt: 1), worker: "w1", outcome: .failed("oom"), now: 1, policy: policy)
        let promoted = try XCTUnwrap(lease(now: 2))
        XCTAssertEqual(promoted.job, first[0].job)
        XCTAssertNil(try lease(now: 2), "32 trained + 20 reserved: nothing else fits in 55")
    }

    /// A database file migrated only up to `migration` and filled by `fill`, as an older
    /// coordinator left it: its path, and what removes it.
    func olderDatabase(upTo migration: String, _ fill: (Database) throws -> Void) throws -> (path: String, cleanup: () -> Void) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tuna-store-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("db.sqlite").path
        let q = try DatabaseQueue(path: path)
        try Schema.migrator.migrate(q, upTo: migration)
        try q.write(fill)
        try q.close()
        return (path, { try? FileManager.default.removeItem(at: dir) })
    }

    /// The `i`th series of a curves reply.
    func nth(_ curves: JSONValue, _ i: Int) -> JSONValue? {
        guard let all = curves["series"]?.arrayValue, i < all.count else { return nil }
        return all[i]
    }

    /// The dashboard's curves: a job's train and eval points kept at ingest, a later attempt's
    /// value at a step replacing an earlier one's; jobs best first by the objective; each curve
    /// cut to at most the points asked for, keeping the last.
    func testCurvePointsAreKeptAtIngestBestJobsFirst() throws {
        try submit("i: [1, 2]")
        let a = try XCTUnwrap(store.leaseNext(worker: "w1", request: cpu, now: 0, policy: policy))
        let b = try XCTUnwrap(store.leaseNext(worker: "w2", request: cpu, now: 0, policy: policy))
        var evs = (1...300).map { EventRecord(seq: Int64($0), at_ms: 1, event: ["event": "step", "step": .int($0), "loss": .number(3.0 - Double($0) / 1000)]) }
        evs.append(EventRecord(seq: 301, at_ms: 1, event: ["event": "eval", "step": 300, "loss": 2.5]))
        evs.append(EventRecord(seq: 302, at_ms: 1, event: ["event": "eval", "loss": 2.4]))   // no step: no point
        _ = try store.appendEvents(Events(job: a.job, attempt: 1, events: evs), worker: "w1", now: 1)
        _ = try store.appendEvents(Events(job: b.job, attempt: 1, events: [
            EventRecord(seq: 0, at_ms: 1, event: ["event": "step", "step": 1, "loss": 9.0]),
            EventRecord(seq: 1, at_ms: 1, event: ["event": "eval", "step": 1, "loss": 1.0]),
        ]), worker: "w2", now: 1)
        // Job b's attempt is lost; its second attempt reports step 1 again.
        try store.finish(AttemptRef(job: b.job, attempt: 1), worker: "w2", outcome: .failed("x"), now: 2, policy: policy)
        let b2 = try XCTUnwrap(store.leaseNext(worker: "w2", request: cpu, now: 10_000, policy: policy))
        _ = try store.appendEvents(Events(job: b.job, attempt: b2.attempt, events: [
            EventRecord(seq: 0, at_ms: 1, event: ["event": "step", "step": 1, "loss": 8.0]),
        ]), worker: "w2", now: 10_001)
        func curves(_ kind: CurveKind, limit: Int = 10, points: Int = 200, jobs: [JobID]? = nil) throws -> JSONValue {
            try JSONValue.parse(store.db.curvesJSON(sweep: 1, kind: kind, limit: limit, maxPoints: points, jobs: jobs))
        }
        let eval = try curves(.eval)
        XCTAssertEqual(eval["jobs"], 2)
        // Job b's second lease cleared its summary (a new attempt starts it over), so it has no
        // objective yet and comes after a; its curve keeps attempt 1's eval.
        XCTAssertEqual(eval["series"]?.arrayValue?.map { $0["job"] }, [.int(Int(a.job)), .int(Int(b.job))], "jobs with a value first")
        XCTAssertEqual(nth(eval, 0)?["steps"], [300], "the eval without a step makes no point")
        XCTAssertEqual(nth(eval, 1)?["steps"], [1])
        XCTAssertEqual(try curves(.train, limit: 1)["series"]?.arrayValue?.count, 1, "the limit")
        XCTAssertEqual(nth(try curves(.train, jobs: [b.job]), 0)?["values"]?.arrayValue?.compactMap(\.doubleValue), [8.0], "the later attempt's value at step 1")
        let cut = nth(try curves(.train, points: 50, jobs: [a.job]), 0)
        let steps = try XCTUnwrap(cut?["steps"]?.arrayValue?.compactMap(\.intValue))
        XCTAssert(steps.count <= 50 && steps.first == 1 && steps.last == 300, "\(steps)")
        XCTAssertEqual(Float(try XCTUnwrap(cut?["values"]?.arrayValue?.last?.doubleValue)), Float(2.7))
        XCTAssertEqual(Store.downsample(count: 5, to: 10), [0, 1, 2, 3, 4])
        for (n, limit) in [(1000, 200), (201, 200), (7, 2), (10_000, 3)] {
            let keep = Store.downsample(count: n, to: limit)
            XCTAssert(keep.count <= limit && keep.first == 0 && keep.last == n - 1 && keep == keep.sorted(), "\(n) to \(limit): \(keep)")
        }
        XCTAssertThrowsError(try store.db.curvesJSON(sweep: 99, kind: .eval, limit: 1, maxPoints: 2))
    }

    /// A database from before the dashboard: its stored events fill the curve points when the
    /// migration runs (a later attempt's value winning), so old sweeps draw too.
    func testCurvePointsAreFilledFromOlderDatabases() throws {
        let (path, cleanup) = try olderDatabase(upTo: "v12-step-budget") { db in
            try db.execute(sql: "INSERT INTO sweeps (id, name, spec_yaml, method, varying, created_ms) VALUES (1, 'old', '', 'grid', '[]', 0)")
            try db.execute(sql: """
                INSERT INTO jobs (id, sweep_id, idx, params_hash, params, varying, trainer, gpus, gpu_memory_gb, priority,
                                  max_attempts, status, attempts, failures, created_ms, final_val_loss) VALUES (1, 1, 0, 'h', '{}', '{}', 'command', 0, 0, 0, 3, 'succeeded', 2, 1, 0, 1.5)
                """)
            for n in [1, 2] {
                try db.execute(sql: "INSERT INTO attempts (id, job_id, number, worker_id, state, lease_expires_ms, started_ms) VALUES (?, 1, ?, 'w1', 'failed', 0, 0)", arguments: [n, n])
            }
            for (attempt, seq, event) in [(1, 0, #"{"event":"step","step":1,"loss":4.0}"#), (1, 1, #"{"event":"eval","step":1,"loss":3.0}"#),
                                          (2, 0, #"{"event":"step","step":1,"loss":3.5}"#), (2, 1, #"{"event":"step","step":2.0,"loss":2.5}"#),
                                          (2, 5, #"{"event":"step","step":2.5,"loss":9.0}"#),
                                          (2, 2, #"{"event":"eval","step":2,"loss":1.5}"#), (2, 3, #"{"event":"eval","loss":1.4}"#),
                                          (2, 4, #"{"event":"log","line":"x"}"#)] {
                try db.execute(sql: "INSERT INTO events (attempt_id, seq, at_ms, event) VALUES (?, ?, 0, ?)", arguments: [attempt, seq, event])
            }
        }
        defer { cleanup() }
        let store = try Store(path: path)
        let train = try JSONValue.parse(store.curvesJSON(sweep: 1, kind: .train, limit: 10, maxPoints: 200))
        XCTAssertEqual(nth(train, 0)?["steps"], [1, 2])
        XCTAssertEqual(nth(train, 0)?["values"]?.arrayValue?.compactMap(\.doubleValue), [3.5, 2.5], "attempt 2's value at step 1")
        let eval = try JSONValue.parse(store.curvesJSON(sweep: 1, kind: .eval, limit: 10, maxPoints: 200))
        XCTAssertEqual(nth(eval, 0)?["steps"], [1, 2])
        XCTAssertEqual(nth(eval, 0)?["values"]?.arrayValue?.compactMap(\.doubleValue), [3.0, 1.5])
    }

    func testSchemaOnDiskSurvivesReopen() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tuna-store-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("db.sqlite").path
        do {
            let s = SyncStore(store: try Store(path: path))
            _ = try s.insertSweep(try SweepSpec.plan(yaml: "name: s\ntrainer: command\ncommand: [x]\na: [1,2]"), specYAML: "", now: 0)
        }
        let again = try Store(path: path)
        XCTAssertEqual(try again.sweeps().first?.jobs, 2)
        let mode = try again.db.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") }
        XCTAssertEqual(mode, "wal")
    }

    /// A database written before the typed job spec (schema up to `v2-metrics`): its queued LoRA
    /// job gains the `task` the strict readers need, its event lines move to the `events` table,
    /// and both are read back through the store.
    func testOlderDatabasesAreMigrated() throws {
        let oldParams = #"{"dataset":{"format":"jsonl","path":"d","template":"harmony","val_fraction":0.1},"lora":{"alpha":16.0,"dropout":0.0,"rank":8,"target_modules":["q_proj"],"target_parameters":[],"use_rslora":false},"max_attempts":3,"model":"m","name":"old","priority":0,"resources":{"cpu_cores":0,"gpu_memory_gb":0.0,"gpus":0,"ram_gb":0.0},"train":{"adam_beta1":0.9,"adam_beta2":0.999,"adam_eps":1e-08,"batch_size":1,"checkpoint_every_steps":0,"epochs":1,"eval_every_steps":0,"grad_accum":1,"gradient_checkpointing":false,"learning_rate":0.0002,"max_grad_norm":1.0,"max_seq_len":1024,"max_steps":0,"min_lr_ratio":0.1,"packing":false,"scheduler":"linear","seed":42,"warmup_ratio":0.0,"weight_decay":0.0},"trainer":"native"}"#
        let (path, cleanup) = try olderDatabase(upTo: "v2-metrics") { db in
            try db.execute(sql: "INSERT INTO sweeps (id, name, spec_yaml, method, varying, created_ms) VALUES (1, 'old', '', 'grid', '[]', 0)")
            try db.execute(sql: """
                INSERT INTO jobs (id, sweep_id, idx, params_hash, params, varying, trainer, gpus, gpu_memory_gb, priority,
                                  max_attempts, status, attempts, failures, created_ms) VALUES (1, 1, 0, 'h', ?, '{}', 'native', 0, 0, 0, 3, 'queued', 1, 1, 0)
                """, arguments: [oldParams])
            try db.execute(sql: "INSERT INTO attempts (id, job_id, number, worker_id, state, lease_expires_ms, started_ms) VALUES (1, 1, 1, 'w1', 'failed', 0, 0)")
            try db.execute(sql: #"INSERT INTO metrics (attempt_id, seq, at_ms, event) VALUES (1, 0, 5, '{"event":"config"}')"#)
        }
        defer { cleanup() }
        let store = SyncStore(store: try Store(path: path))
        let events = try store.events(job: 1, attempt: nil)
        XCTAssertEqual(events.map(\.event), [["event": "config"]])
        let native = JobRequest(free_gpus: [], trainers: ["native"])
        _ = try store.upsertWorker(Register(worker_id: "w3", name: "w3", capabilities: Capabilities(hostname: "w3", trainers: ["native"], gpus: [], cpu_cores: 2, ram_gb: 8),
                                            max_jobs: 1, running: []), now: 0)
        let lease = try XCTUnwrap(store.leaseNext(worker: "w3", request: native, now: 1, policy: policy))
        let spec = try JobSpec(json: JobSpec.specOfJobFile(lease.spec))
        XCTAssertEqual(spec.task, .lora)
        XCTAssertEqual(spec.lora?.rank, 8)
        // The jobs table was rebuilt (v7) and the sweep's counts filled in from its jobs.
        XCTAssertEqual(try store.sweeps().map { [$0.jobs, $0.running] }, [[1, 1]])
    }
}
