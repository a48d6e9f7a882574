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

    func makeModel() throws -> URL {
        let model = cluster.dir.appendingPathComponent("model")
        let made = try cluster.cliLocal(["init-model", "--out", model.path, "--layers", "2", "--seed", "3", "--vocabulary",
                                         Cluster.repo.appendingPathComponent("Tests/TunaTextTests/Fixtures/o200k_base.tiktoken").path])
        XCTAssertEqual(made.status, 0, made.out)
        return model
    }

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

    func testDemoSweepTrainsAndUploadsPeftAdapters() async throws {
        let model = try makeModel()
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
}
