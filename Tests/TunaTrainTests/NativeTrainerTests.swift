import Foundation
import XCTest
import TunaCore
@testable import TunaEngine
import TunaText
@testable import TunaTrain

/// The native trainer on a tiny gpt-oss (MXFP4 experts) and the committed arithmetic data.
final class NativeTrainerTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tuna-train-\(UUID().uuidString.prefix(8))")
        let model = dir.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        let vocab = try TinyTokenizer.write(to: model.appendingPathComponent("tokenizer.json"),
                                            tiktokenFile: Self.repo.appendingPathComponent("Tests/TunaTextTests/Fixtures/o200k_base.tiktoken"))
        try TinyModel.write(to: model, spec: TinyModel.Spec(hiddenSize: 64, layers: 2, experts: 4, expertsPerToken: 2,
                                                            vocabSize: (vocab + 31) / 32 * 32), seed: 11)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func job(_ train: String = "", lora: String = "{rank: 4, alpha: 8, target_parameters: [1.mlp.experts.gate_up_proj]}",
             seed: Int = 3) throws -> TrainJob {
        let yaml = """
        name: t
        trainer: native
        model: model
        dataset: {path: \(Self.repo.appendingPathComponent("jobs/demo/arithmetic.csv").path), format: csv, fields: {prompt: problem, response: solution}, template: im_start, val_fraction: 0.1}
        lora: \(lora)
        train: {epochs: 1, learning_rate: 1e-2, batch_size: 8, max_seq_len: 96, seed: \(seed)\(train)}
        """
        let plan = try SweepSpec.plan(yaml: yaml)
        return try TrainJob(spec: plan.jobs[0].spec, root: dir)
    }

    /// Runs a job, returning its events; `stopAfter` makes `shouldStop` fire after that many steps.
    func run(_ job: TrainJob, out: String, checkpoint: String? = nil, resume: String? = nil, stopAfter: Int? = nil, pauseAt: Int? = nil)
        throws -> [[String: JSONValue]] {
        var events: [[String: JSONValue]] = []
        let trainer = NativeTrainer(job: job, outputDir: dir.appendingPathComponent(out),
                                    checkpointDir: checkpoint.map { dir.appendingPathComponent($0) },
                                    resumeDir: resume.map { dir.appendingPathComponent($0) },
                                    emit: { events.append($0) },
                                    shouldStop: { stopAfter.map { n in events.filter { $0["event"] == "step" }.count >= n } ?? false },
                                    pauseAtStep: pauseAt)
        do { _ = try trainer.run() } catch TrainError.interrupted {}
        // Every event is one the contract (contract/trainer-events.json) names, with its fields.
        for e in events { XCTAssertEqual(TrainerEvent.problems(.object(e)), [], "\(e)") }
        return events
    }

    func losses(_ events: [[String: JSONValue]], _ kind: String = "step") -> [Double] {
        events.filter { $0["event"]?.stringValue == kind }.compactMap { $0["loss"]?.doubleValue }
    }

    func testLearnsTheTaskAndIsDeterministic() throws {
        let j = try job(", max_steps: 30")
        let a = try run(j, out: "a")
        let baseline = try XCTUnwrap(losses(a, "baseline").first)
        let final = try XCTUnwrap(losses(a, "eval").last)
        // Stated threshold: 30 steps must cut the held-out loss by at least 30%.
        XCTAssertLessThan(final, 0.7 * baseline, "validation loss \(final) vs \(baseline) before training")
        XCTAssertEqual(losses(a).count, 30)
        let b = try run(j, out: "b")
        XCTAssertEqual(losses(a), losses(b), "same seed, same losses")
        let adapterA = try Data(contentsOf: dir.appendingPathComponent("a/adapter_model.safetensors"))
        let adapterB = try Data(contentsOf: dir.appendingPathComponent("b/adapter_model.safetensors"))
        XCTAssertEqual(adapterA, adapterB, "same seed, same adapter bytes")
        // another seed draws other batches and another init
        let c = try run(try job(", max_steps: 30", seed: 4), out: "c")
        XCTAssertNotEqual(losses(a), losses(c))
    }

    func testInterruptedRunResumesOnTheSameCurve() throws {
        let j = try job(", max_steps: 12, grad_accum: 2, checkpoint_every_steps: 4", lora: "{rank: 4, dropout: 0.1}")
        let whole = try run(j, out: "whole")
        let first = try run(j, out: "first", checkpoint: "ckpt", stopAfter: 6)
        XCTAssertEqual(losses(first).count, 6)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("ckpt/checkpoint.safetensors").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("first/adapter_model.safetensors").path),
                       "an interrupted run writes no adapter")
        let second = try run(j, out: "second", resume: "ckpt")
        XCTAssertEqual(second.first { $0["event"] == "resumed" }?["step"]?.intValue, 6)
        XCTAssertEqual(second.filter { $0["event"] == "step" }.first?["step"]?.intValue, 7, "step numbers continue")
        XCTAssertEqual(losses(first) + losses(second), losses(whole), "the resumed run continues the same loss curve")
        XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("second/adapter_model.safetensors")),
                       try Data(contentsOf: dir.appendingPathComponent("whole/adapter_model.safetensors")))
    }

    /// ASHA's promotion mode at the trainer: paused at step 5 and at step 9 of 12 (a cosine
    /// schedule with warmup, computed for all 12 steps, and dropout), each leg resumed from the
    /// last one's checkpoint, the three legs are the unpaused run, loss for loss and byte for byte.
    func testAPausedRunResumedTwiceIsTheUnpausedRun() throws {
        let j = try job(", max_steps: 12, scheduler: cosine, warmup_ratio: 0.2, eval_every_steps: 4", lora: "{rank: 4, dropout: 0.1}")
        let whole = try run(j, out: "whole")
        let a = try run(j, out: "a", checkpoint: "ckpt-a", pauseAt: 5)
        XCTAssertEqual(a.last?["event"], "paused")
        XCTAssertEqual(a.last?["step"], 5)
        XCTAssertEqual(a.filter { $0["event"] == "eval" }.compactMap { $0["step"]?.intValue }, [4, 5], "an eval at the pause, for the rung")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("a/adapter_model.safetensors").path), "a paused run writes no adapter")
        let b = try run(j, out: "b", checkpoint: "ckpt-b", resume: "ckpt-a", pauseAt: 9)
        let c = try run(j, out: "c", resume: "ckpt-b")
        XCTAssertEqual(losses(a) + losses(b) + losses(c), losses(whole), "one curve")
        XCTAssertEqual((a + b + c).filter { $0["event"] == "step" }.compactMap { $0["lr"]?.doubleValue },
                       whole.filter { $0["event"] == "step" }.compactMap { $0["lr"]?.doubleValue }, "the schedule of the whole run")
        XCTAssertEqual(losses(c, "eval").last, losses(whole, "eval").last)
        XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("c/adapter_model.safetensors")),
                       try Data(contentsOf: dir.appendingPathComponent("whole/adapter_model.safetensors")))
        // Resumed past the step it is to pause at (a checkpoint from step 9, asked to pause at 5):
        // it pauses at once, with an eval there and no step trained.
        let late = try run(j, out: "late", checkpoint: "ckpt-late", resume: "ckpt-b", pauseAt: 5)
        XCTAssertEqual(late.last?["event"], "paused")
        XCTAssertEqual(late.last?["step"], 9)
        XCTAssertEqual(losses(late).count, 0)
        XCTAssertEqual(late.filter { $0["event"] == "eval" }.compactMap { $0["step"]?.intValue }, [9])
    }

    func testCorruptResumeCheckpointStartsOverAndSaysSo() throws {
        let ckpt = dir.appendingPathComponent("bad")
        try FileManager.default.createDirectory(at: ckpt, withIntermediateDirectories: true)
        try Data("not a safetensors file".utf8).write(to: ckpt.appendingPathComponent("checkpoint.safetensors"))
        let events = try run(try job(", max_steps: 2"), out: "o", resume: "bad")
        XCTAssertNotNil(events.first { $0["event"] == "resume_failed" })
        XCTAssertEqual(losses(events).count, 2)
    }

    func testBadJobsGetClearErrors() throws {
        XCTAssertThrowsError(try job(lora: "{rank: 4, dropout: 0.1, target_parameters: [1.mlp.experts.down_proj]}")) { e in
            XCTAssertTrue("\(e)".contains("PEFT cannot apply dropout to expert parameters"), "\(e)")
        }
        let missingLayer = try job(lora: "{rank: 4, target_parameters: [9.mlp.experts.down_proj]}")
        XCTAssertThrowsError(try run(missingLayer, out: "x")) { e in
            XCTAssertTrue("\(e)".contains("9.mlp.experts.down_proj names a layer the model (2 layers) does not have"), "\(e)")
        }
        var missingData = try job()
        missingData.dataset.path = dir.appendingPathComponent("nope.csv").path
        XCTAssertThrowsError(try run(missingData, out: "x")) { e in XCTAssertTrue("\(e)".contains("nope.csv"), "\(e)") }
    }

    /// Gradient accumulation is exact: two micro-batches with lossScale 1/(all tokens) sum to
    /// the gradients of one batch holding both.
    func testAccumulatedGradientsEqualTheWholeBatch() throws {
        let model = try GptOssModel(directory: dir.appendingPathComponent("model"))
        let settings = try LoRASettings(rank: 4, alpha: 8, targetParameters: ["0.mlp.experts.down_proj"])
        var adapter = try LoRAAdapter.initialized(settings: settings, config: model.config, seed: 1)
        for k in adapter.tensors.keys where k.contains("lora_B") { adapter.tensors[k] = adapter.tensors[k]!.map { _ in 0.01 } }
        let rows: [[Int32]] = [[5, 9, 200, 31, 7, 8], [44, 3, 90, 12, 600, 2]]
        let whole = try model.lossAndGradients(try Batch(tokens: rows, labels: rows), adapter: adapter)
        let total = Double(whole.tokens)
        var summed = adapter.zeros()
        for row in rows {
            let part = try model.lossAndGradients(try Batch(tokens: [row], labels: [row]), adapter: adapter, lossScale: 1 / total)
            for (k, g) in part.gradients { summed[k] = zip(summed[k]!, g).map { $0 + $1 } }
        }
        for (k, g) in whole.gradients {
            let diff = zip(g, summed[k]!).map { abs($0 - $1) }.max()!, scale = g.map(abs).max()!
            XCTAssertLessThan(diff, 1e-5 * max(scale, 1e-6), k)
        }
    }

    /// What `tuna prepare` writes is what contract/prepared-plan.json says the torch trainer reads.
    func testPreparedPlansHaveThePublishedFields() throws {
        let lora = dir.appendingPathComponent("prepared")
        try TrainingPlan(job: try job(", max_steps: 3")).write(to: lora)
        let plan = try JSONValue.parse(Data(contentsOf: lora.appendingPathComponent("plan.json")))
        XCTAssertEqual(plan.objectValue.map { Set($0.keys) }, Set(PreparedPlan.lora.fields))
        XCTAssertEqual(plan["format"]?.stringValue, PreparedPlan.lora.format)

        let spec = try JobValidator.spec([
            "name": "p", "trainer": "native", "task": "prune", "model": "model",
            "dataset": ["path": .string(Self.repo.appendingPathComponent("jobs/demo/arithmetic.csv").path), "format": "csv",
                        "fields": ["prompt": "problem", "response": "solution"], "template": "im_start"],
            "prune": ["keep": 2, "calibration_examples": 8, "max_seq_len": 64]])
        let prune = dir.appendingPathComponent("prepared-prune")
        try PrunePlan(job: try PruneJob(spec: spec, root: dir)).write(to: prune)
        let prunePlan = try JSONValue.parse(Data(contentsOf: prune.appendingPathComponent("plan.json")))
        XCTAssertEqual(prunePlan.objectValue.map { Set($0.keys) }, Set(PreparedPlan.prune.fields))
        XCTAssertEqual(prunePlan["format"]?.stringValue, PreparedPlan.prune.format)
    }
}
