import Foundation
import XCTest
import TunaCore
import TunaEngine

/// The demo's sweep through a real coordinator and a real worker with the native trainer: a
/// small gpt-oss with MXFP4 experts made by `tuna init-model`, the committed arithmetic data,
/// 2 ranks x (attention only | attention + experts of layer 1).
final class NativeSweepTests: XCTestCase {
    var cluster: Cluster!

    override func setUpWithError() throws { cluster = try Cluster() }
    override func tearDown() { cluster.shutdown() }

    func spec(model: URL, extraTrain: String = "") -> String {
        """
        name: native-it
        trainer: native
        model: \(model.path)
        dataset: {path: \(Cluster.repo.appendingPathComponent("jobs/demo/arithmetic.csv").path), format: csv, fields: {prompt: problem, response: solution}, template: im_start, val_fraction: 0.1}
        lora:
          rank: [2, 8]
          target_parameters: {grid: [[], [1.mlp.experts.gate_up_proj, 1.mlp.experts.down_proj]]}
        train: {epochs: 1, max_steps: 20, learning_rate: 1e-2, scheduler: constant, batch_size: 8, max_seq_len: 96, seed: 5\(extraTrain)}
        """
    }

    /// ASHA's promotion mode with the native trainer through real workers. Worker a trains job 0
    /// to its rung (step 4 of 8) and pauses it, then is shut down; worker b trains the others
    /// to the rung, and the best (job 0, the largest learning rate) is promoted and resumes on
    /// b from a's checkpoint. Its losses equal, exactly, those of the same job in a sweep
    /// without early stopping: the native trainer is deterministic and the schedule is the
    /// whole run's.
    func testAPromotedJobResumesOnAnotherWorkerOnTheCurveOfAnUnpausedRun() async throws {
        let model = try cluster.makeTinyModel()
        try cluster.startCoordinator()
        try cluster.startWorker("a")
        func spec(_ lrs: String, _ sweep: String) -> String {
            """
            name: promoted
            trainer: native
            model: \(model.path)
            dataset: {path: \(Cluster.repo.appendingPathComponent("jobs/demo/arithmetic.csv").path), format: csv, fields: {prompt: problem, response: solution}, template: im_start, val_fraction: 0.1}
            lora: {rank: 4, dropout: 0.1}
            train: {epochs: 1, max_steps: 8, learning_rate: \(lrs), scheduler: cosine, warmup_ratio: 0.25, batch_size: 8, max_seq_len: 96, seed: 5, eval_every_steps: 2}
            \(sweep)
            """
        }
        let s = try await cluster.submit(spec("[1e-2, 1e-3, 1e-5]", "sweep: {early_stopping: {type: asha, grace_steps: 4, max_steps: 8, reduction_factor: 3}}"))
        let jobs = try await cluster.results(s.sweep).map(\.id)
        try await cluster.waitUntil("job 0 paused at its rung", timeout: 120) { try await cluster.job(jobs[0]).job.status == .paused }
        let a = try XCTUnwrap(cluster.workers["a"])
        kill(a.processIdentifier, SIGTERM)
        a.waitUntilExit()
        try cluster.startWorker("b")
        try await cluster.waitUntil("the sweep is over", timeout: 240) {
            try await cluster.results(s.sweep).allSatisfy { $0.status == .succeeded || $0.status == .stopped || $0.status == .failed }
        }
        let rows = try await cluster.results(s.sweep)
        XCTAssertEqual(rows.map(\.status), [.succeeded, .stopped, .stopped], "\(rows.map { "\($0.status) \($0.error ?? "")" })")
        let best = try await cluster.job(jobs[0])
        XCTAssertEqual(best.attempts.map(\.state), ["paused", "succeeded"])
        XCTAssertEqual(best.attempts.map(\.worker), ["a", "b"], "paused on a, resumed on b")
        var steps: [JSONValue] = []
        for attempt in [1, 2] { steps += try await cluster.events(jobs[0], attempt: attempt).filter { $0.event["event"]?.stringValue == "step" }.map(\.event) }
        let resumed = try await cluster.events(jobs[0], attempt: 2).first { $0.event["event"]?.stringValue == "resumed" }
        XCTAssertEqual(resumed?.event["step"]?.intValue, 4)

        // The same job without early stopping.
        let plain = try await cluster.submit(spec("1e-2", ""))
        try await cluster.waitUntil("the unpaused job is over", timeout: 120) {
            let status = try await cluster.results(plain.sweep)[0].status
            return status != .queued && status != .running
        }
        let whole = try await cluster.results(plain.sweep)[0]
        XCTAssertEqual(whole.status, .succeeded)
        let wholeSteps = try await cluster.events(whole.id).filter { $0.event["event"]?.stringValue == "step" }.map(\.event)
        XCTAssertEqual(steps.compactMap { $0["step"]?.intValue }, Array(1...8))
        XCTAssertEqual(steps.compactMap { $0["loss"]?.doubleValue }, wholeSteps.compactMap { $0["loss"]?.doubleValue }, "the same losses, exactly")
        XCTAssertEqual(steps.compactMap { $0["lr"]?.doubleValue }, wholeSteps.compactMap { $0["lr"]?.doubleValue })
        XCTAssertEqual(rows[0].final_val_loss, whole.final_val_loss)
        XCTAssertEqual(rows[0].adapter_sha256, whole.adapter_sha256, "the same adapter, byte for byte")
    }

    func testDemoSweepTrainsAndUploadsPeftAdapters() async throws {
        let model = try cluster.makeTinyModel()
        try cluster.startCoordinator()
        try cluster.startWorker("native", maxJobs: 2)
        let specFile = cluster.dir.appendingPathComponent("native.yaml")
        try spec(model: model).write(to: specFile, atomically: true, encoding: .utf8)
        let (status, out) = try cluster.cli(["submit", "--json", specFile.path])
        XCTAssertEqual(status, 0, out)
        let submitted = try JSONDecoder().decode(Submitted.self, from: Data(out.utf8))
        XCTAssertEqual(submitted.jobs, 4)
        try await cluster.waitUntil("the native sweep to finish", timeout: 240) {
            try await cluster.results(submitted.sweep).allSatisfy { $0.status == .succeeded || $0.status == .failed }
        }
        let rows = try await cluster.results(submitted.sweep)
        XCTAssertEqual(rows.map(\.status), Array(repeating: .succeeded, count: 4), cluster.log("worker-native.log").suffix(3000).description)
        let checkpoint = try GptOssCheckpoint(directory: model)
        for r in rows {
            let events = try await cluster.events(r.id)
            let baseline = try XCTUnwrap(events.first { $0.event["event"]?.stringValue == "baseline" }?.event["loss"]?.doubleValue)
            let val = try XCTUnwrap(r.final_val_loss)
            // Learnable data: 20 steps must cut the held-out loss by at least 15%.
            XCTAssertLessThan(val, 0.85 * baseline, "job \(r.id): validation loss \(val) vs \(baseline) before training")
            XCTAssertEqual(events.filter { $0.event["event"]?.stringValue == "step" }.compactMap { $0.event["step"]?.intValue },
                           Array(1...20))
            // The uploaded adapter is a PEFT directory the engine reads back with the job's targets.
            let dir = cluster.dir.appendingPathComponent("fetched-\(r.id)")
            let fetch = try cluster.cli(["fetch", "\(r.id)", "--out", dir.path])
            XCTAssertEqual(fetch.status, 0, fetch.out)
            let adapter = try LoRAAdapter.load(directory: dir, config: checkpoint.config)
            XCTAssertEqual(adapter.settings.rank, r.params["lora.rank"]?.intValue)
            XCTAssertEqual(adapter.settings.targetParameters, r.params["lora.target_parameters"]?.arrayValue?.compactMap(\.stringValue))
        }
    }

    /// The spec's `eval` through a real coordinator and worker: every job reports `exact_match`
    /// and `answered` (its eval event) and the base model's (`baseline_*`), the sweep's objective
    /// can name `exact_match`, and `tuna samples` shows graded samples whose verdicts are the
    /// grader's own on what they record, and whose share is the job's exact_match.
    func testTaskEvaluationReportsExactMatchForEveryJobAndTheBaseModel() async throws {
        let model = try cluster.makeTinyModel()
        try cluster.startCoordinator()
        try cluster.startWorker("native", maxJobs: 2)
        let count = 6
        let rule = AnswerRule(extract: .regex, compare: .math, pattern: #"(?<== )-?\d+|^\d+(?= is)"#)
        let s = try await cluster.submit("""
            name: graded
            trainer: native
            model: \(model.path)
            dataset: {path: \(Cluster.repo.appendingPathComponent("jobs/demo/arithmetic.csv").path), format: csv, fields: {prompt: problem, response: solution}, template: im_start, val_fraction: 0.1}
            lora: {rank: [2, 8]}
            train: {epochs: 1, max_steps: 6, learning_rate: 1e-2, batch_size: 8, max_seq_len: 96, seed: 5}
            eval:
              generate: {count: \(count), max_new_tokens: 12, batch_size: 4}
              answer: {extract: regex, compare: math, pattern: '\(rule.pattern!)'}
            objective: {metric: exact_match, mode: max}
            """)
        try await cluster.waitUntil("the graded sweep to finish", timeout: 240) {
            try await cluster.results(s.sweep).allSatisfy { $0.status == .succeeded || $0.status == .failed }
        }
        let rows = try await cluster.results(s.sweep)
        XCTAssertEqual(rows.map(\.status), [.succeeded, .succeeded], cluster.log("worker-native.log").suffix(3000).description)
        for r in rows {
            let metrics = try XCTUnwrap(r.metrics, "job \(r.id) has no metrics")
            for name in ["exact_match", "answered", "baseline_exact_match", "baseline_answered"] {
                let v = try XCTUnwrap(metrics[name], "job \(r.id): no \(name) in \(metrics)")
                XCTAssertTrue((0...1).contains(v), "\(name) \(v)")
            }
            XCTAssertEqual(r.objective, metrics["exact_match"], "the objective is the job's exact_match")
            let (status, out) = try cluster.cli(["samples", "\(r.id)", "--json"])
            XCTAssertEqual(status, 0, out)
            let samples = try out.split(separator: "\n").map { try JSONValue.parse(String($0)) }
            let base = samples.filter { $0["model"]?.stringValue == "base" }, tuned = samples.filter { $0["model"]?.stringValue == "adapter" }
            XCTAssertEqual(base.count, count)
            XCTAssertEqual(tuned.count, count)
            XCTAssertEqual(Set(tuned.compactMap { $0["step"]?.intValue }), [6], "the adapter's samples are from the last step")
            for (group, metric) in [(base, "baseline_exact_match"), (tuned, "exact_match")] {
                XCTAssertEqual(group.compactMap { $0["index"]?.intValue }, Array(0..<count))
                var right = 0
                for e in group {
                    let reference = try XCTUnwrap(e["reference"]?.stringValue)
                    XCTAssertEqual(e["expected"]?.stringValue, rule.extract(from: reference), "the reference's answer, by the job's rule")
                    let verdict = e["answer"]?.stringValue.map { rule.matches($0, e["expected"]?.stringValue ?? "") } ?? false
                    XCTAssertEqual(e["correct"]?.boolValue, verdict, "\(e)")
                    if verdict { right += 1 }
                    XCTAssertNotNil(e["prompt"]?.stringValue)
                    XCTAssertLessThanOrEqual(e["completion_tokens"]?.intValue ?? 99, 12)
                }
                XCTAssertEqual(metrics[metric], Double(right) / Double(count), metric)
            }
            let text = try cluster.cli(["samples", "\(r.id)", "--limit", "2"])
            XCTAssertEqual(text.status, 0, text.out)
            XCTAssertTrue(text.out.contains("#1  ") && text.out.contains("#2  ") && !text.out.contains("#3  "), text.out)
            XCTAssertTrue(text.out.contains("exact match: base ") && text.out.contains(", step 6 "), text.out)
        }
        let results = try cluster.cli(["results", "--sweep", "\(s.sweep)"])
        XCTAssertTrue(results.out.contains("exact_match") && results.out.contains("baseline_exact_match"), results.out)
        let none = try cluster.cli(["samples", "\(rows[0].id)", "--step", "3"])
        XCTAssertEqual(none.status, 1)
        XCTAssertTrue(none.out.contains("no samples at step 3"), none.out)
    }

    /// A sweep over N of `task: prune` jobs: profile once (the later jobs reuse the worker's
    /// cached profile), evaluate by masking, write each pruned checkpoint.
    func testPruneSweepOverN() async throws {
        let model = try cluster.makeTinyModel()
        let general = cluster.dir.appendingPathComponent("general.jsonl")
        try (0..<24).map { "{\"prompt\": \"Tell me about item \($0).\", \"response\": \"Item \($0) is a small blue thing.\"}" }
            .joined(separator: "\n").write(to: general, atomically: true, encoding: .utf8)
        try cluster.startCoordinator()
        try cluster.startWorker("pruner", maxJobs: 1)
        let specFile = cluster.dir.appendingPathComponent("prune.yaml")
        try """
        name: prune-it
        trainer: native
        task: prune
        model: \(model.path)
        dataset: {path: \(Cluster.repo.appendingPathComponent("jobs/demo/arithmetic.csv").path), format: csv, fields: {prompt: problem, response: solution}, template: im_start, val_fraction: 0.1}
        prune:
          keep: [8, 5, 3]
          score: reap
          calibration_examples: 64
          max_seq_len: 96
          general: {path: \(general.path), template: im_start, val_fraction: 0}
        """.write(to: specFile, atomically: true, encoding: .utf8)
        let (status, out) = try cluster.cli(["submit", "--json", specFile.path])
        XCTAssertEqual(status, 0, out)
        let submitted = try JSONDecoder().decode(Submitted.self, from: Data(out.utf8))
        try await cluster.waitUntil("the prune sweep to finish", timeout: 180) {
            try await cluster.results(submitted.sweep).allSatisfy { $0.status == .succeeded || $0.status == .failed }
        }
        let rows = try await cluster.results(submitted.sweep).sorted { $0.id < $1.id }
        XCTAssertEqual(rows.map(\.status), [.succeeded, .succeeded, .succeeded], cluster.log("worker-pruner.log").suffix(3000).description)
        var cachedProfiles = 0
        for r in rows {
            let events = try await cluster.events(r.id).map(\.event)
            let baseline = try XCTUnwrap(events.first { $0["event"]?.stringValue == "baseline" }?["loss"]?.doubleValue)
            let eval = try XCTUnwrap(events.first { $0["event"]?.stringValue == "eval" })
            let keep = try XCTUnwrap(r.params["prune.keep"]?.intValue)
            XCTAssertEqual(eval["keep"]?.intValue, keep)
            if keep == 8 {
                XCTAssertEqual(try XCTUnwrap(r.final_val_loss), baseline, accuracy: 1e-12, "keeping every expert changes nothing")
                XCTAssertEqual(eval["top1_agreement"]?.doubleValue, 1)
            } else {
                XCTAssertNotEqual(try XCTUnwrap(r.final_val_loss), baseline)
                XCTAssertGreaterThan(try XCTUnwrap(eval["kl"]?.doubleValue), 0)
                XCTAssertGreaterThan(try XCTUnwrap(eval["pruned_hit_share"]?.doubleValue), 0)
            }
            XCTAssertNotNil(eval["general_loss"]?.doubleValue)
            // the results row carries the job's own N's figures and the unpruned baseline
            let metrics = try XCTUnwrap(r.metrics, "results row without metrics")
            XCTAssertEqual(metrics["baseline_loss"], baseline)
            for name in ["kl", "top1_agreement", "pruned_hit_share", "routing_mass_kept", "general_loss", "general_kl"] {
                XCTAssertEqual(metrics[name], eval[name]?.doubleValue, name)
            }
            XCTAssertNil(metrics["keep"], "the position of an eval is not a metric")
            if events.contains(where: { $0["event"]?.stringValue == "prune_profile" && $0["cached"]?.boolValue == true }) { cachedProfiles += 1 }
            let dir = cluster.dir.appendingPathComponent("pruned-\(r.id)")
            let fetch = try cluster.cli(["fetch", "\(r.id)", "--out", dir.path])
            XCTAssertEqual(fetch.status, 0, fetch.out)
            let pruned = try GptOssCheckpoint(directory: dir.appendingPathComponent("model"))
            XCTAssertEqual(pruned.config.numLocalExperts, keep)
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("prune_report.json").path))
        }
        XCTAssertEqual(cachedProfiles, 2, "jobs after the first reuse the worker's cached calibration profile")
        let table = try cluster.cli(["results", "--sweep", "\(submitted.sweep)"])
        XCTAssertEqual(table.status, 0, table.out)
        let header = try XCTUnwrap(table.out.split(separator: "\n").first)
        for column in ["prune.keep", "final_val", "baseline_loss", "kl", "top1_agreement", "pruned_hit_share", "routing_mass_kept"] {
            XCTAssertTrue(header.contains(column), "`tuna results` has no \(column) column: \(header)")
        }
    }
}
