import Crypto
import Foundation
import XCTest
import TunaCore
import TunaWire

/// A real coordinator and real worker processes on loopback, running sweeps through the toy
/// trainer with the `command` trainer.
final class SweepEndToEndTests: XCTestCase {
    var cluster: Cluster!

    override func setUpWithError() throws { cluster = try Cluster() }
    override func tearDown() { cluster.shutdown() }

    func testEightJobSweepOnTwoWorkers() async throws {
        try cluster.startCoordinator()
        try cluster.startWorker("w1")
        try cluster.startWorker("w2")
        let (status, out) = try cluster.cli(["submit", "--json", try writeSpec(cluster.toySpec("lr: [0.001, 0.01, 0.1, 1.0]\nsteps: [8, 12]\nstep_ms: 40"))])
        XCTAssertEqual(status, 0, out)
        let submitted = try JSONDecoder().decode(Submitted.self, from: Data(out.utf8))
        XCTAssertEqual(submitted.jobs, 8)
        // `tuna watch` follows the sweep and returns when it is done.
        let watch = try cluster.cli(["watch", "\(submitted.sweep)", "--interval", "0.2"])
        XCTAssertEqual(watch.status, 0, watch.out)
        XCTAssert(watch.out.contains("8/8 succeeded, 0 running, 0 queued"), watch.out)
        let all = try await cluster.results()
        XCTAssert(all.allSatisfy { $0.status == .succeeded })

        let rows = try await cluster.results(submitted.sweep)
        XCTAssertEqual(rows.count, 8)
        XCTAssertEqual(Set(rows.compactMap(\.worker)), ["w1", "w2"], "both workers took jobs")
        for r in rows {
            let lr = try XCTUnwrap(r.params["lr"]?.doubleValue), steps = try XCTUnwrap(r.params["steps"]?.intValue)
            XCTAssertEqual(try XCTUnwrap(r.final_train_loss), toyLoss(step: steps, lr: lr), accuracy: 1e-12)
            XCTAssertEqual(try XCTUnwrap(r.best_val_loss), toyLoss(step: steps, lr: lr) + 0.05, accuracy: 1e-12)
            XCTAssertEqual(r.attempts, 1)
            // The loss curve: one step event per step, in order.
            let steps_ = try await cluster.events(r.id).filter { $0.event["event"]?.stringValue == "step" }
            XCTAssertEqual(steps_.compactMap { $0.event["step"]?.intValue }, Array(1...steps))
        }

        // Fetched adapters match the SHA-256 the results report, through the CLI too.
        let r0 = rows[0]
        let outDir = cluster.dir.appendingPathComponent("fetched")
        let fetch = try cluster.cli(["fetch", "\(r0.id)", "--out", outDir.path])
        XCTAssertEqual(fetch.status, 0, fetch.out)
        let bytes = try Data(contentsOf: outDir.appendingPathComponent("adapter_model.safetensors"))
        XCTAssertEqual(SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined(), r0.adapter_sha256)
        XCTAssertTrue(FileManager.default.fileExists(atPath: outDir.appendingPathComponent("adapter_config.json").path))

        // The CLI's JSON results carry the documented fields.
        let (rs, json) = try cluster.cli(["results", "--json", "--sweep", "\(submitted.sweep)", "--sort", "final_train_loss"])
        XCTAssertEqual(rs, 0, json)
        let parsed = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])
        XCTAssertEqual(parsed.count, 8)
        for key in ["id", "status", "attempts", "params", "final_train_loss", "best_val_loss", "final_val_loss", "adapter_sha256", "worker"] {
            XCTAssertNotNil(parsed[0][key], key)
        }
        let losses = parsed.compactMap { $0["final_train_loss"] as? Double }
        XCTAssertEqual(losses, losses.sorted(), "sorted by final_train_loss")
        let table = try cluster.cli(["results", "--sweep", "\(submitted.sweep)"])
        XCTAssert(table.out.contains("lr") && table.out.contains("steps") && table.out.contains("succeeded"), table.out)
        // The objective (the default: val_loss, lowest first) is each job's last eval loss; the
        // table lists the best first, marks it and names it.
        let best = try XCTUnwrap(rows.min { ($0.final_val_loss ?? .infinity, $0.id) < ($1.final_val_loss ?? .infinity, $1.id) })
        XCTAssertEqual(rows.map(\.objective), rows.map(\.final_val_loss))
        XCTAssert(table.out.contains("sweep \(submitted.sweep): best job \(best.id) (val_loss \(String(format: "%.4f", best.final_val_loss ?? 0)), lowest)"), table.out)
        let firstRow = try XCTUnwrap(table.out.split(separator: "\n").dropFirst().first)
        XCTAssert(firstRow.hasPrefix("*") && firstRow.contains(" \(best.id) "), "\(firstRow)")
        let client = try await cluster.client()
        defer { client.close() }
        let byObjective = try await client.sendRaw(ResultsQuery(sweep: submitted.sweep, sort: "objective")).resultRows()
        XCTAssertEqual(byObjective.compactMap(\.objective), rows.compactMap(\.objective).sorted())
        let csv = try cluster.cli(["results", "--csv"])
        XCTAssertEqual(csv.out.split(separator: "\n").count, 9, csv.out)
    }

    /// ASHA in stopping mode through a real coordinator and workers. The grid runs the best
    /// learning rates first (the toy loss falls faster with a higher one), so once three jobs
    /// have reached the first rung every later job is outside its best third and is stopped
    /// there, told through its worker, with the decision explained; the best job succeeds.
    func testEarlyStoppingStopsJobsOutsideARungsBest() async throws {
        try cluster.startCoordinator()
        try cluster.startWorker("w1")
        try cluster.startWorker("w2")
        let lrs = [0.09, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03, 0.02, 0.01]
        let s = try await cluster.submit(cluster.toySpec("""
            lr: [\(lrs.map { "\($0)" }.joined(separator: ", "))]
            steps: 60
            step_ms: 20
            eval_every: 5
            sweep: {early_stopping: {type: asha, mode: stopping, grace_steps: 10, max_steps: 60, reduction_factor: 3}}
            """))
        let watched = try cluster.cli(["watch", "\(s.sweep)", "--interval", "0.2"])
        XCTAssertEqual(watched.status, 0, "stopped jobs are not failures: \(watched.out)")
        let rows = try await cluster.results(s.sweep)
        XCTAssertEqual(rows.first?.status, .succeeded, "the best learning rate trains to the end")
        // Job 1 runs beside job 0 and usually ends before a third job reaches rung 10; on a slow
        // machine it may still be running then, and is stopped too.
        let stopped = rows.filter { $0.status == .stopped }
        let table = "\(rows.map { "\($0.index): \($0.status) \($0.error ?? "")" })"
        XCTAssert(Set(stopped.map(\.index)).isSuperset(of: 2..<9) && !stopped.contains { $0.index == 0 }, table)
        for r in stopped where r.index >= 2 {
            let reason = try XCTUnwrap(r.error)
            XCTAssert(reason.hasPrefix("stopped at step 10: val_loss ") && reason.contains(" at rung 10 (cut "), reason)
            let steps = try await cluster.events(r.id).compactMap { $0.event["event"]?.stringValue == "step" ? $0.event["step"]?.intValue : nil }
            XCTAssertLessThan(steps.max() ?? 0, 60, "job \(r.id) was stopped before its end")
            let detail = try cluster.cli(["jobs", "\(r.id)"])
            XCTAssert(detail.out.contains("stopped at step 10"), detail.out)
        }
        XCTAssert(watched.out.contains("\(stopped.count) stopped early"), watched.out)
    }

    /// ASHA in promotion mode through real workers (eta 3, rungs 10 and 30 of 60 steps). The
    /// toy trainer's loss falls faster with a larger lr and the jobs run in the order of their
    /// lr, so every decision is known: the best three of nine pause at 10 and are promoted, the
    /// best of those three is promoted again at 30 and trains to the end, across three attempts
    /// whose steps join into the one curve of an unpaused run. Everything else is stopped.
    func testPromotionPausesJobsAtRungsAndResumesTheBestFromItsCheckpoint() async throws {
        try cluster.startCoordinator()
        try cluster.startWorker("w1")
        try cluster.startWorker("w2")
        let lrs = [0.09, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03, 0.02, 0.01]
        let s = try await cluster.submit(cluster.toySpec("""
            lr: [\(lrs.map { "\($0)" }.joined(separator: ", "))]
            steps: 60
            step_ms: 10
            checkpoint_every: 100
            sweep: {early_stopping: {type: asha, grace_steps: 10, max_steps: 60, reduction_factor: 3}}
            """))
        let watched = try cluster.cli(["watch", "\(s.sweep)", "--interval", "0.2"])
        XCTAssertEqual(watched.status, 0, watched.out)
        let rows = try await cluster.results(s.sweep)
        XCTAssertEqual(rows.map(\.status), [.succeeded] + Array(repeating: .stopped, count: 8), "\(rows.map { "\($0.index) \($0.status) \($0.error ?? "")" })")
        let best = try await cluster.job(rows[0].id)
        XCTAssertEqual(best.attempts.map(\.state), ["paused", "paused", "succeeded"])
        XCTAssertEqual(best.decisions?.map(\.kind), [.paused, .promoted, .paused, .promoted])
        XCTAssertEqual(best.decisions?.map(\.rung), [10, 10, 30, 30])
        var steps: [Int] = [], losses: [Double] = []
        for attempt in 1...3 {
            let events = try await cluster.events(rows[0].id, attempt: attempt)
            if attempt > 1 { XCTAssertEqual(events.first { $0.event["event"]?.stringValue == "resumed" }?.event["step"]?.intValue, [10, 30][attempt - 2]) }
            for e in events where e.event["event"]?.stringValue == "step" {
                steps.append(e.event["step"]!.intValue!); losses.append(e.event["loss"]!.doubleValue!)
            }
        }
        XCTAssertEqual(steps, Array(1...60), "three legs, one curve")
        XCTAssertEqual(losses, (1...60).map { toyLoss(step: $0, lr: 0.09) })
        // Jobs 1 and 2 were promoted once, and stopped at rung 30; the rest stopped at rung 10.
        for r in rows.dropFirst() {
            let d = try await cluster.job(r.id)
            let rung = r.index < 3 ? 30 : 10
            XCTAssertEqual(d.decisions?.last?.kind, .stopped)
            XCTAssertEqual(d.decisions?.last?.rung, rung, "job \(r.index)")
            XCTAssert(r.error?.hasPrefix("stopped at step \(rung): val_loss ") == true, r.error ?? "")
            XCTAssert(r.error?.hasSuffix("; the sweep has nothing left to run") == true, r.error ?? "")
        }
        let detail = try cluster.cli(["jobs", "\(rows[1].id)"])
        XCTAssert(detail.out.contains("promoted at step 10: val_loss "), detail.out)
        XCTAssert(watched.out.contains("8 stopped early"), watched.out)
    }

    /// TPE through real workers: the toy trainer's loss falls with its lr, so once the random
    /// startup jobs are in, the proposals move to the large learning rates, and every proposal
    /// is a decision `tuna jobs` shows.
    func testTPEProposesFromTheResultsOfRealWorkers() async throws {
        try cluster.startCoordinator()
        try cluster.startWorker("w1")
        try cluster.startWorker("w2")
        let s = try await cluster.submit(cluster.toySpec("""
            lr: {log_uniform: [0.0001, 1.0]}
            steps: 10
            step_ms: 5
            sweep: {method: tpe, count: 16, startup: 6, seed: 11}
            """))
        let drawn = try await cluster.results(s.sweep).map { $0.params["lr"]!.doubleValue! }
        let watched = try cluster.cli(["watch", "\(s.sweep)", "--interval", "0.2"])
        XCTAssertEqual(watched.status, 0, watched.out)
        let rows = try await cluster.results(s.sweep)
        XCTAssert(rows.allSatisfy { $0.status == .succeeded })
        let lrs = rows.map { $0.params["lr"]!.doubleValue! }
        XCTAssertEqual(Array(lrs.prefix(6)), Array(drawn.prefix(6)), "the startup jobs keep their draws")
        var proposed = 0
        for r in rows.dropFirst(6) {
            let reasons = try await cluster.job(r.id).decisions?.map(\.reason) ?? []
            XCTAssertEqual(reasons.count, 1, "\(reasons)")
            if reasons.first?.hasPrefix("proposed by TPE from ") == true { proposed += 1 }
        }
        XCTAssertGreaterThanOrEqual(proposed, 5, "most later jobs were proposed (a job leased before 6 results were in keeps its draw)")
        // The proposals concentrate where the loss is low (large lr): their median beats the draws'.
        func median(_ x: [Double]) -> Double { let s = x.sorted(); return s[s.count / 2] }
        XCTAssertGreaterThan(median(Array(lrs.suffix(8))), median(Array(drawn.suffix(8))), "\(lrs) vs drawn \(drawn)")
        // More trials for the same sweep: proposed from all 16 results.
        let extended = try cluster.cli(["sweep", "extend", "\(s.sweep)", "--count", "3"])
        XCTAssertEqual(extended.status, 0, extended.out)
        XCTAssert(extended.out.contains("sweep \(s.sweep): 3 job(s) added"), extended.out)
        let again = try cluster.cli(["watch", "\(s.sweep)", "--interval", "0.2"])
        XCTAssert(again.out.contains("19/19 succeeded"), again.out)
        for r in try await cluster.results(s.sweep).suffix(3) {
            let reason = try await cluster.job(r.id).decisions?.first?.reason ?? ""
            XCTAssert(reason.hasPrefix("proposed by TPE from 1"), reason)
        }
    }

    /// A coordinator killed -9 right after a job paused, before anything could be promoted,
    /// loses nothing and decides what a run without the kill decides.
    func testAKill9BetweenAPauseAndItsPromotionDecidesTheSame() async throws {
        try cluster.startCoordinator()
        try cluster.startWorker("w1")
        let spec = cluster.toySpec("""
            lr: [0.05, 0.03, 0.09]
            steps: 40
            step_ms: 20
            sweep: {early_stopping: {type: asha, grace_steps: 10, max_steps: 40, reduction_factor: 3}}
            """)
        let first = try await cluster.submit(spec)
        let jobs = try await cluster.results(first.sweep).map(\.id)
        try await cluster.waitUntil("job 0 paused at rung 10") { try await cluster.results(first.sweep)[0].status == .paused }
        cluster.kill9Coordinator()
        try cluster.startCoordinator()
        try await cluster.waitUntil("the sweep is over", timeout: 90) {
            try await cluster.results(first.sweep).allSatisfy { $0.status == .succeeded || $0.status == .stopped }
        }
        // The same sweep again, never interrupted.
        let second = try await cluster.submit(spec)
        try await cluster.waitUntil("the second sweep is over", timeout: 90) {
            try await cluster.results(second.sweep).allSatisfy { $0.status == .succeeded || $0.status == .stopped }
        }
        func decisions(_ sweep: SweepID) async throws -> [String] {
            var out: [String] = []
            for r in try await cluster.results(sweep) {
                for d in try await cluster.job(r.id).decisions ?? [] { out.append("job \(r.index): \(d.kind) \(d.rung) \(d.reason)") }
            }
            return out
        }
        let killed = try await decisions(first.sweep), clean = try await decisions(second.sweep)
        XCTAssertEqual(killed, clean)
        let statuses = try await cluster.results(first.sweep).map(\.status)
        XCTAssertEqual(statuses, [.stopped, .stopped, .succeeded])
        let v10 = String(format: "%.4g", toyLoss(step: 10, lr: 0.09) + 0.05), v30 = String(format: "%.4g", toyLoss(step: 30, lr: 0.09) + 0.05)
        XCTAssertEqual(killed.filter { $0.hasPrefix("job 2:") }, [
            "job 2: paused 10 paused at step 10: val_loss \(v10), waiting for the rung to be judged",
            "job 2: promoted 10 promoted at step 10: val_loss \(v10) in the top 1/3 of 3 jobs at rung 10 (cut \(v10))",
            "job 2: paused 30 paused at step 30: val_loss \(v30), waiting for the rung to be judged",
            "job 2: promoted 30 promoted at step 30: val_loss \(v30) in the top 1/3 (rounded up) of 1 jobs at rung 30 (cut \(v30)); the sweep has nothing else to run",
        ])
        let attempts = try await cluster.job(jobs[0]).attempts.map(\.state)
        XCTAssertEqual(attempts, ["paused"], "the paused attempt survived the kill as it was")
    }

    /// A coordinator killed -9 while it stores a large sweep (chunk by chunk, jobs dispatchable
    /// as they commit) finishes storing it after it starts again: every job once, in order.
    func testASweepInterruptedByKill9IsFinishedAfterTheRestart() async throws {
        try cluster.startCoordinator()
        let axis = (0..<300).map(String.init).joined(separator: ",")
        let n = 300 * 300
        let submitting = Task { [cluster] in try? await cluster!.submit("name: big\ntrainer: command\ncommand: [x]\na: [\(axis)]\nb: [\(axis)]") }
        func stored() async throws -> Int {
            let c = try await cluster.client(); defer { c.close() }
            return try await c.send(ListSweeps()).rows.first?.jobs ?? 0
        }
        try await cluster.waitUntil("part of the sweep is stored") { let k = try await stored(); return k > 0 && k < n / 2 }
        cluster.kill9Coordinator()
        _ = await submitting.value
        try cluster.startCoordinator()
        try await cluster.waitUntil("the sweep is whole") { try await stored() == n }
        let indices = try await cluster.results(1).map(\.index)
        XCTAssertEqual(indices, Array(0..<n))
        XCTAssert(cluster.log("coordinator.log").contains("sweep 1: finished storing the jobs of an interrupted submit"), cluster.log("coordinator.log"))
    }

    func testKilledWorkersJobFinishesOnTheOtherWorker() async throws {
        try cluster.startCoordinator()
        try cluster.startWorker("w1")
        let s = try await cluster.submit(cluster.toySpec("steps: 40\nstep_ms: 50\ncheckpoint_every: 5"))
        let jobID = try await cluster.results(s.sweep)[0].id
        try await cluster.waitUntil("w1 has uploaded a checkpoint while training") {
            try await cluster.job(jobID).artifacts.contains { $0.kind == "checkpoint" }
        }
        try cluster.startWorker("w2")
        cluster.kill9(worker: "w1")
        try await cluster.waitUntil("the job succeeds on w2") { try await cluster.results(s.sweep)[0].status == .succeeded }
        let d = try await cluster.job(jobID)
        XCTAssertEqual(d.attempts.map(\.state), ["lost", "succeeded"])
        XCTAssertEqual(d.attempts.map(\.worker), ["w1", "w2"])
        XCTAssertEqual(d.job.worker, "w2")
        XCTAssertEqual(d.artifacts.filter { $0.kind == "adapter" }.count, 2)
        XCTAssertEqual(d.job.final_train_loss, toyLoss(step: 40, lr: 1e-3))
        // The checkpoint synced before the kill let attempt 2 resume instead of starting over.
        let resumed = try await cluster.events(jobID, attempt: 2).first { $0.event["event"]?.stringValue == "resumed" }
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(resumed?.event["step"]?.intValue, "attempt 2 resumed"), 5)
    }

    func testCoordinatorKill9LosesNothingAndTheSweepCompletes() async throws {
        try cluster.startCoordinator()
        try cluster.startWorker("w1")
        try cluster.startWorker("w2")
        let s = try await cluster.submit(cluster.toySpec("i: [1, 2, 3, 4, 5, 6]\nsteps: 25\nstep_ms: 40"))
        try await cluster.waitUntil("two jobs succeed") { try await cluster.results(s.sweep).filter { $0.status == .succeeded }.count >= 2 }
        try await cluster.waitUntil("a job is running") { try await cluster.results(s.sweep).contains { $0.status == .running } }
        let before = try await cluster.results(s.sweep)
        var eventsBefore: [JobID: [Int64]] = [:]
        for r in before { eventsBefore[r.id] = try await cluster.events(r.id).map(\.seq) }
        cluster.kill9Coordinator()
        try await Task.sleep(nanoseconds: 500_000_000)   // workers notice and keep training
        try cluster.startCoordinator()
        try await cluster.waitUntil("all six succeed", timeout: 90) { try await cluster.results(s.sweep).allSatisfy { $0.status == .succeeded } }

        let after = try await cluster.results(s.sweep)
        XCTAssertEqual(after.map(\.id), before.map(\.id), "same jobs")
        for b in before where b.status == .succeeded {
            let a = try XCTUnwrap(after.first { $0.id == b.id })
            XCTAssertEqual(a.adapter_sha256, b.adapter_sha256, "accepted result kept")
            XCTAssertEqual(a.attempts, b.attempts)
        }
        for r in after {
            let seqs = try await cluster.events(r.id).map(\.seq)
            // Every event acknowledged before the kill is still there (for jobs whose attempt
            // did not change), and the curve has no holes or duplicates.
            if r.attempts == before.first(where: { $0.id == r.id })?.attempts {
                XCTAssert(Set(eventsBefore[r.id] ?? []).isSubset(of: Set(seqs)), "job \(r.id) lost events")
            }
            XCTAssertEqual(seqs, Array(0..<Int64(seqs.count)), "job \(r.id): events contiguous")
            let steps = try await cluster.events(r.id).filter { $0.event["event"]?.stringValue == "step" }.compactMap { $0.event["step"]?.intValue }
            XCTAssertEqual(steps.last, 25)
        }
        // Artifacts stored before the kill can still be fetched.
        let c = try await cluster.client(); defer { c.close() }
        let first = try XCTUnwrap(before.first { $0.status == .succeeded })
        let firstDetail = try await cluster.job(first.id)
        let art = try XCTUnwrap(firstDetail.artifacts.first { $0.name == "adapter_model.safetensors" })
        try await ArtifactTransfer.download(c, art, to: cluster.dir.appendingPathComponent("dl.bin"))
    }

    func testSigtermHandsTheJobBackWithACheckpointAndTheNextAttemptResumes() async throws {
        try cluster.startCoordinator()
        try cluster.startWorker("w1", grace: 5)
        let s = try await cluster.submit(cluster.toySpec("steps: 60\nstep_ms: 50\ncheckpoint_every: 5"))
        let jobID = try await cluster.results(s.sweep)[0].id
        try await cluster.waitUntil("w1 passes step 12") {
            try await cluster.events(jobID).contains { ($0.event["step"]?.intValue ?? 0) >= 12 }
        }
        let w1 = try XCTUnwrap(cluster.workers["w1"])
        kill(w1.processIdentifier, SIGTERM)
        w1.waitUntilExit()
        XCTAssertEqual(w1.terminationStatus, 0, cluster.log("worker-w1.log"))
        let handed = try await cluster.job(jobID)
        XCTAssertEqual(handed.attempts.map(\.state), ["returned"], "returned at once, no lease expiry")
        XCTAssertEqual(handed.job.status, .queued)
        XCTAssert(handed.artifacts.contains { $0.kind == "checkpoint" && $0.name == "step.txt" }, "\(handed.artifacts)")

        try cluster.startWorker("w2")
        try await cluster.waitUntil("the job succeeds") { try await cluster.results(s.sweep)[0].status == .succeeded }
        let resumed = try await cluster.events(jobID, attempt: 2).first { $0.event["event"]?.stringValue == "resumed" }
        let from = try XCTUnwrap(resumed?.event["step"]?.intValue, "attempt 2 resumed from the checkpoint")
        XCTAssertGreaterThanOrEqual(from, 10)
        let steps = try await cluster.events(jobID, attempt: 2).compactMap { $0.event["event"]?.stringValue == "step" ? $0.event["step"]?.intValue : nil }
        XCTAssertEqual(steps.first, from + 1)
        let v145 = try await cluster.job(jobID).attempts.map(\.state)
        XCTAssertEqual(v145, ["returned", "succeeded"])
    }

    func testCancelStopsTheRunningTrainerAndRetryRequeues() async throws {
        try cluster.startCoordinator()
        // A long grace: only the trainer honouring SIGTERM can free the worker quickly.
        try cluster.startWorker("w1", grace: 60)
        let s = try await cluster.submit(cluster.toySpec("i: [1, 2]\nsteps: 400\nstep_ms: 50"))
        try await cluster.waitUntil("a job runs") { try await cluster.results(s.sweep).contains { $0.status == .running } }
        let (st, out) = try cluster.cli(["cancel", "\(s.sweep)"])
        XCTAssertEqual(st, 0, out)
        XCTAssert(out.contains("cancelled 2"), out)
        let running = try await cluster.results(s.sweep).first { $0.attempts == 1 }!
        // The trainer stops: no new step events arrive.
        try await Task.sleep(nanoseconds: 1_000_000_000)
        let n1 = try await cluster.events(running.id).count
        try await Task.sleep(nanoseconds: 1_000_000_000)
        let v161 = try await cluster.events(running.id).count
        XCTAssertEqual(v161, n1)
        let v162 = try await cluster.job(running.id).attempts.map(\.state)
        XCTAssertEqual(v162, ["cancelled"])
        // The worker is free again: a new sweep runs.
        let s2 = try await cluster.submit(cluster.toySpec(name: "after", "steps: 3\nstep_ms: 10"))
        // The trainer was stopped (not left running to its 20 s end, nor to the 60 s SIGKILL):
        // the one-slot worker is free for the next sweep within seconds.
        try await cluster.waitUntil("the next sweep runs", timeout: 8) { try await cluster.results(s2.sweep)[0].status == .succeeded }
        // retry requeues only the cancelled ones.
        let (rs, rout) = try cluster.cli(["retry", "\(s.sweep)"])
        XCTAssertEqual(rs, 0, rout)
        XCTAssert(rout.contains("requeued 2"), rout)
        let v170 = try await cluster.results(s2.sweep)[0].status
        XCTAssertEqual(v170, .succeeded)
    }

    func testFailingJobsRetryWithBackoffAndAFailingWorkerIsQuarantined() async throws {
        cluster.extraCoordinatorArgs = ["--quarantine-after", "3"]
        try cluster.startCoordinator()
        try cluster.startWorker("w1")
        // Fails on attempts 1 and 2, succeeds on 3.
        let s = try await cluster.submit(cluster.toySpec("steps: 6\nstep_ms: 10\nfail_attempts: 2\nmax_attempts: 3"))
        try await cluster.waitUntil("the third attempt succeeds") { try await cluster.results(s.sweep)[0].status == .succeeded }
        let firstID = try await cluster.results(s.sweep)[0].id
        let d = try await cluster.job(firstID)
        XCTAssertEqual(d.attempts.map(\.state), ["failed", "failed", "succeeded"])
        XCTAssert(d.attempts[0].error?.contains("exited with code 1") == true, "\(d.attempts)")
        // Backoff: attempt 3 started at least base·2 after attempt 2 ended.
        XCTAssertGreaterThanOrEqual(d.attempts[2].started_ms - (d.attempts[1].ended_ms ?? 0), 400)

        // A job that always fails: three failures in a row quarantine the worker.
        let bad = try await cluster.submit(cluster.toySpec(name: "bad", "i: [1, 2, 3, 4]\nsteps: 4\nstep_ms: 1\nfail_attempts: 99\nmax_attempts: 1"))
        try await cluster.waitUntil("the worker is quarantined") {
            let c = try await cluster.client(); defer { c.close() }
            return try await c.send(ListWorkers()).rows.first?.quarantined == true
        }
        try await Task.sleep(nanoseconds: 500_000_000)
        let rows = try await cluster.results(bad.sweep)
        XCTAssertEqual(rows.filter { $0.status == .failed }.count, 3)
        XCTAssertEqual(rows.filter { $0.status == .queued }.count, 1, "a quarantined worker takes no more jobs")
        let w = try cluster.cli(["workers"])
        XCTAssert(w.out.contains("QUARANTINED"), w.out)
        // Lifting the quarantine reaches the connected worker: it takes the last job.
        let u = try cluster.cli(["workers", "--unquarantine", "w1"])
        XCTAssertEqual(u.status, 0, u.out)
        try await cluster.waitUntil("the last job runs after the quarantine is lifted") {
            try await cluster.results(bad.sweep).filter { $0.status == .queued }.isEmpty
        }
    }

    func testAnOutputFileWithABadNameFailsTheJobWithAClearReason() async throws {
        try cluster.startCoordinator()
        try cluster.startWorker("w1")
        let s = try await cluster.submit(cluster.toySpec("steps: 2\nstep_ms: 1\nmax_attempts: 1\nextra_output_file: \"bad name.bin\""))
        try await cluster.waitUntil("the job fails") { try await cluster.results(s.sweep)[0].status == .failed }
        let r = try await cluster.results(s.sweep)[0]
        XCTAssert(r.error?.contains("bad name.bin") == true, "\(r.error ?? "nil")")
    }

    private func writeSpec(_ yaml: String) throws -> String {
        let url = cluster.dir.appendingPathComponent("spec-\(UUID().uuidString.prefix(6)).yaml")
        try yaml.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }
}
