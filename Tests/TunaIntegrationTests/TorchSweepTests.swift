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
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["python3", "-c", "import torch, transformers, peft"]
        probe.standardOutput = FileHandle.nullDevice
        probe.standardError = FileHandle.nullDevice
        try probe.run()
        probe.waitUntilExit()
        guard probe.terminationStatus == 0 else { throw XCTSkip("python3 lacks torch/transformers/peft") }
        cluster = try Cluster()
    }

    override func tearDown() { cluster?.shutdown() }

    func testTorchJobsMatchTheNativeTrainer() async throws {
        let model = cluster.dir.appendingPathComponent("model")
        let made = try cluster.cliLocal(["init-model", "--out", model.path, "--layers", "2", "--seed", "3", "--vocabulary",
                                         Cluster.repo.appendingPathComponent("Tests/TunaTextTests/Fixtures/o200k_base.tiktoken").path])
        XCTAssertEqual(made.status, 0, made.out)
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
        try cluster.startCoordinator()
        try cluster.startWorker("both", maxJobs: 2,
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
        let torch = try await cluster.results(sweeps[0]).sorted { $0.index < $1.index }
        let native = try await cluster.results(sweeps[1]).sorted { $0.index < $1.index }
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
}
