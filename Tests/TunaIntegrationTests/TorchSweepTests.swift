import Foundation
import XCTest
import TunaCore
import TunaEngine

/// The torch trainer (worker/tuna_torch) through a real coordinator and worker, on CPU: a
/// tiny gpt-oss with MXFP4 experts, the demo data, LoRA on attention and on layer 1's experts.
/// Its losses must match the native trainer's on the same job (same token ids, batches,
/// schedule and initial adapter, from `tuna prepare`), and its adapter must load natively.
/// Skipped where python3 lacks torch, transformers or peft (CI installs them).
final class TorchSweepTests: XCTestCase {
    var cluster: Cluster!

    override func setUpWithError() throws {
        guard Cluster.succeeds(["python3", "-c", "import torch, transformers, peft"]) else { throw XCTSkip("python3 lacks torch/transformers/peft") }
        cluster = try Cluster()
    }

    override func tearDown() { cluster?.shutdown() }

    /// Starts a coordinator and one worker offering both trainers, submits `spec("torch")` then
    /// `spec("native")`, and waits for both sweeps to finish; their results, sorted by index.
    func runBoth(worker: String, maxJobs: Int, spec: (String) -> String) async throws -> (torch: [ResultRow], native: [ResultRow]) {
        try cluster.startCoordinator()
        try cluster.startWorker(worker, maxJobs: maxJobs,
                                extra: ["--torch-trainer", Cluster.repo.appendingPathComponent("worker/tuna-torch").path])
        var sweeps: [SweepID] = []
        for trainer in ["torch", "native"] {
            let file = cluster.dir.appendingPathComponent("\(trainer).yaml")
            try spec(trainer).write(to: file, atomically: true, encoding: .utf8)
            let (status, out) = try cluster.cli(["submit", "--json", file.path])
            XCTAssertEqual(status, 0, out)
            sweeps.append(try JSONDecoder().decode(Submitted.self, from: Data(out.utf8)).sweep)
        }
        try await cluster.waitUntil("both sweeps to finish", timeout: 400) {
            for s in sweeps {
                let rows = try await cluster.results(s)
                if !rows.allSatisfy({ $0.status == .succeeded || $0.status == .failed }) { return false }
            }
            return true
        }
        return (try await cluster.results(sweeps[0]).sorted { $0.index < $1.index },
                try await cluster.results(sweeps[1]).sorted { $0.index < $1.index })
    }

    func testTorchJobsMatchTheNativeTrainer() async throws {
        let model = try cluster.makeTinyModel()
        func spec(_ trainer: String) -> String {
            """
            name: \(trainer)-it
            trainer: \(trainer)
            model: \(model.path)
            dataset: {path: \(Cluster.repo.appendingPathComponent("jobs/demo/arithmetic.csv").path), format: csv, fields: {prompt: problem, response: solution}, template: im_start, val_fraction: 0.1}
            lora:
              rank: 4
              target_parameters: [1.mlp.experts.gate_up_proj, 1.mlp.experts.down_proj]
            train: {epochs: 1, max_steps: 4, learning_rate: 5e-3, scheduler: cosine, warmup_ratio: 0.2, batch_size: 4, grad_accum: 2, max_seq_len: 96, seed: 5, weight_decay: 0.01}
            """
        }
        let (torch, native) = try await runBoth(worker: "both", maxJobs: 2, spec: spec)
        XCTAssertEqual(torch.map(\.status), [.succeeded], cluster.log("worker-both.log").suffix(4000).description)
        XCTAssertEqual(native.map(\.status), [.succeeded])
        let checkpoint = try GptOssCheckpoint(directory: model)
        for (t, n) in zip(torch, native) {
            func losses(_ id: JobID) async throws -> [Double] {
                try await cluster.events(id).filter { $0.event["event"]?.stringValue == "step" }.compactMap { $0.event["loss"]?.doubleValue }
            }
            let lt = try await losses(t.id), ln = try await losses(n.id)
            XCTAssertEqual(lt.count, 4)
            XCTAssertEqual(ln.count, 4)
            // Same data, batches, schedule and initial adapter; fp32 on both sides: the curves
            // agree to float rounding (stated tolerance: 1e-4 relative per step).
            for (a, b) in zip(lt, ln) { XCTAssertEqual(a, b, accuracy: 1e-4 * abs(b), "torch \(lt) vs native \(ln)") }
            let dir = cluster.dir.appendingPathComponent("torch-\(t.id)")
            let fetch = try cluster.cli(["fetch", "\(t.id)", "--out", dir.path])
            XCTAssertEqual(fetch.status, 0, fetch.out)
            let adapter = try LoRAAdapter.load(directory: dir, config: checkpoint.config)
            XCTAssertEqual(adapter.settings.rank, 4)
        }
    }
    /// A `task: prune` sweep over N through the torch trainer (worker/tuna_torch/prune.py) and the
    /// same sweep through the native one, on one worker that runs one job at a time: the torch
    /// jobs keep the same experts and report the same held-out numbers (fp32 on both sides: to
    /// rounding), the second torch job reuses the profile the first cached in the worker's
    /// TUNA_CACHE_DIR, and the uploaded pruned checkpoints are the native ones, tensor for tensor.
    func testTorchPruneSweepMatchesTheNativeOne() async throws {
        let model = try cluster.makeTinyModel()
        func spec(_ trainer: String) -> String {
            """
            name: \(trainer)-prune
            trainer: \(trainer)
            task: prune
            model: \(model.path)
            dataset: {path: \(Cluster.repo.appendingPathComponent("jobs/demo/arithmetic.csv").path), format: csv, fields: {prompt: problem, response: solution}, template: im_start, val_fraction: 0.1}
            prune: {keep: [6, 3], also_evaluate: [8], score: reap, calibration_examples: 32, max_seq_len: 96}
            """
        }
        let (torch, native) = try await runBoth(worker: "pruner", maxJobs: 1, spec: spec)
        XCTAssertEqual(torch.map(\.status), [.succeeded, .succeeded], cluster.log("worker-pruner.log").suffix(4000).description)
        XCTAssertEqual(native.map(\.status), [.succeeded, .succeeded])
        var cached = 0
        for (t, n) in zip(torch, native) {
            let te = try await cluster.events(t.id).map(\.event), ne = try await cluster.events(n.id).map(\.event)
            if te.contains(where: { $0["event"]?.stringValue == "prune_profile" && $0["cached"]?.boolValue == true }) { cached += 1 }
            // every N's evaluation, in the same order; stated tolerance 1e-6 relative (observed ~1e-8)
            func evals(_ events: [JSONValue]) -> [JSONValue] {
                events.filter { ["baseline", "eval", "prune_eval"].contains($0["event"]?.stringValue ?? "") }
            }
            XCTAssertEqual(evals(te).map { $0["keep"]?.intValue }, evals(ne).map { $0["keep"]?.intValue })
            for (a, b) in zip(evals(te), evals(ne)) {
                let want = try XCTUnwrap(b["loss"]?.doubleValue)
                XCTAssertEqual(try XCTUnwrap(a["loss"]?.doubleValue), want, accuracy: 1e-6 * abs(want), "torch \(a) vs native \(b)")
                if let kl = b["kl"]?.doubleValue {
                    XCTAssertEqual(try XCTUnwrap(a["kl"]?.doubleValue), kl, accuracy: 1e-5 * abs(kl) + 1e-12)
                    XCTAssertEqual(try XCTUnwrap(a["pruned_hit_share"]?.doubleValue), try XCTUnwrap(b["pruned_hit_share"]?.doubleValue), accuracy: 1e-3)
                }
            }
            XCTAssertEqual(try XCTUnwrap(t.final_val_loss), try XCTUnwrap(n.final_val_loss), accuracy: 1e-6 * abs(n.final_val_loss ?? 1))
            // the uploaded results: the same experts kept, the same checkpoint
            var dirs: [URL] = []
            for r in [t, n] {
                let dir = cluster.dir.appendingPathComponent("pruned-\(r.id)")
                let fetch = try cluster.cli(["fetch", "\(r.id)", "--out", dir.path])
                XCTAssertEqual(fetch.status, 0, fetch.out)
                dirs.append(dir)
            }
            let reports = try dirs.map { try JSONValue.parse(Data(contentsOf: $0.appendingPathComponent("prune_report.json"))) }
            XCTAssertEqual(reports[0]["layers"]?.arrayValue?.map { $0["kept"] }, reports[1]["layers"]?.arrayValue?.map { $0["kept"] })
            let pruned = try dirs.map { try TensorStore(directory: $0.appendingPathComponent("model")) }
            XCTAssertEqual(pruned[0].names, pruned[1].names)
            for name in pruned[1].names {
                let a = try pruned[0].file(for: name).withRawBytes(name) { Array($0) }
                let b = try pruned[1].file(for: name).withRawBytes(name) { Array($0) }
                XCTAssertEqual(try pruned[0].info(name).shape, try pruned[1].info(name).shape, name)
                XCTAssertTrue(a == b, "\(name) differs")
            }
            XCTAssertEqual(try GptOssCheckpoint(directory: dirs[0].appendingPathComponent("model")).config.numLocalExperts,
                           t.params["prune.keep"]?.intValue)
        }
        XCTAssertEqual(cached, 1, "the second torch job reuses the first one's cached profile")
    }
}
