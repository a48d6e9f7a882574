import Crypto
import Foundation
import XCTest
import TunaCore

/// `tuna export` and `tuna plot` (issue 15): a real sweep, run by a real coordinator and worker, exported to
/// TensorBoard and MLflow and read back with the real `tensorboard` and `mlflow` packages
/// (Tests/Python/read_exports.py). Skipped where python3 lacks them, except in CI, which
/// installs them (scripts/requirements.txt).
final class ExportTests: XCTestCase {
    var cluster: Cluster!

    override func setUpWithError() throws {
        if !Cluster.succeeds(["python3", "-c", "import tensorboard, mlflow"]) {
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail("CI: python3 lacks tensorboard or mlflow (scripts/requirements.txt)") }
            throw XCTSkip("python3 lacks tensorboard or mlflow")
        }
        cluster = try Cluster()
    }

    override func tearDown() { cluster?.shutdown() }

    /// An ASHA sweep (jobs paused, promoted and resumed, some stopped) exported twice: every
    /// job is one run in each tool, with one curve over all its attempts whose values are the
    /// stored events' (MLflow exactly, TensorBoard as float32), the swept parameters, the
    /// status, and the adapter with its SHA-256; the second export replaces the first.
    func testASweepExportedToTensorBoardAndMLflowReadsBackInBoth() async throws {
        try cluster.startCoordinator()
        try cluster.startWorker("w1")
        try cluster.startWorker("w2")
        let s = try await cluster.submit(cluster.toySpec("""
            lr: [0.001, 0.002, 0.004, 0.008]
            steps: 8
            step_ms: 5
            eval_every: 2
            sweep: {early_stopping: {type: asha, grace_steps: 2, max_steps: 8, reduction_factor: 2}}
            """))
        try await cluster.waitUntil("the sweep to end", timeout: 120) {
            try await cluster.results(s.sweep).allSatisfy { [.succeeded, .stopped].contains($0.status) }
        }
        let jobs = try await cluster.results(s.sweep)
        XCTAssert(jobs.contains { $0.status == .succeeded } && jobs.contains { $0.status == .stopped }, "\(jobs.map(\.status))")
        let tb = cluster.dir.appendingPathComponent("tb"), ml = cluster.dir.appendingPathComponent("mlruns")
        for _ in 0..<2 {
            let r = try cluster.cli(["export", "\(s.sweep)", "--tensorboard", tb.path, "--mlflow", ml.path])
            XCTAssertEqual(r.status, 0, r.out)
        }
        let refused = try cluster.cli(["export", "\(s.sweep)", "--tensorboard", "/proc/tuna-export"])
        XCTAssertEqual(refused.status, 1, refused.out)
        XCTAssert(refused.out.contains("cannot write /proc/tuna-export/sweep-\(s.sweep)/job-"), "one line naming the path: \(refused.out)")
        let read = try cluster.runPython("read_exports.py", ["--tensorboard", tb.path, "--mlflow", ml.path])
        XCTAssertEqual(read.status, 0)
        let got = try JSONValue.parse(Data(read.out.utf8))
        XCTAssertEqual(got["mlflow"]?["experiments"], .array(["Default", .string("tuna sweep \(s.sweep): toy")]))

        var promotedSeen = false
        for job in jobs {
            // The expected curves, from the stored events of every attempt (the later attempt's value at a step).
            let detail = try await cluster.job(job.id)
            var loss: [Int: Double] = [:], evalLoss: [Int: Double] = [:]
            for a in detail.attempts.sorted(by: { $0.attempt < $1.attempt }) {
                for e in try await cluster.events(job.id, attempt: a.attempt) {
                    guard let step = e.event["step"]?.intValue, let v = e.event["loss"]?.doubleValue else { continue }
                    if e.event["event"] == "step" { loss[step] = v }
                    if e.event["event"] == "eval" { evalLoss[step] = v }
                }
            }
            if detail.attempts.count > 1 { promotedSeen = true }
            XCTAssertEqual(Array(loss.keys).sorted(), Array(1...(loss.keys.max() ?? 0)), "job \(job.id): one curve over its attempts")
            let run = try XCTUnwrap(got["mlflow"]?["runs"]?["job-\(job.id)"], "job \(job.id) has an MLflow run")
            func series(_ v: JSONValue?) -> [Int: Double] {
                Dictionary(uniqueKeysWithValues: (v?.arrayValue ?? []).map { ($0.arrayValue![0].intValue!, $0.arrayValue![1].doubleValue!) })
            }
            XCTAssertEqual(series(run["metrics"]?["train/loss"]), loss, "job \(job.id): MLflow's train/loss is the stored one, exactly")
            XCTAssertEqual(series(run["metrics"]?["eval/loss"]), evalLoss)
            XCTAssertEqual(run["status"]?.stringValue, job.status == .succeeded ? "FINISHED" : "KILLED")
            XCTAssertEqual(run["params"]?["lr"]?.stringValue, job.params["lr"]?.canonicalJSON)
            XCTAssertEqual(run["tags"]?["tuna.status"]?.stringValue, job.status.rawValue)
            let board = series(got["tensorboard"]?["sweep-\(s.sweep)/job-\(job.id)"]?["train/loss"])
            XCTAssertEqual(Array(board.keys).sorted(), Array(loss.keys).sorted(), "job \(job.id): TensorBoard has every step once (the second export replaced the first)")
            for (step, v) in loss { XCTAssertEqual(board[step]!, Double(Float(v)), accuracy: 0, "float32, as TensorBoard stores a scalar") }
            // The adapter, as an artifact, with the bytes the coordinator stored.
            let adapters = detail.artifacts.filter { $0.kind == "adapter" }
            XCTAssertEqual(Set((run["artifacts"]?.arrayValue ?? []).compactMap(\.stringValue)),
                           Set(job.status == .succeeded ? adapters.map { "adapter/\($0.name)" } : []))
            for a in adapters where job.status == .succeeded {
                let root = URL(string: run["artifact_uri"]!.stringValue!)!.path
                let bytes = try Data(contentsOf: URL(fileURLWithPath: root).appendingPathComponent("adapter").appendingPathComponent(a.name))
                XCTAssertEqual(SHA256.hash(data: bytes).hex, a.sha256)
            }
        }
        XCTAssert(promotedSeen, "some job ran in more than one attempt")

        // `tuna plot`: the same sweep as a figure, a curve per job, a point per job with an objective.
        let svg = cluster.dir.appendingPathComponent("sweep.svg")
        let plotted = try cluster.cli(["plot", "\(s.sweep)", "--out", svg.path])
        XCTAssertEqual(plotted.status, 0, plotted.out)
        let text = try String(contentsOf: svg, encoding: .utf8)
        XCTAssertEqual(text.components(separatedBy: #"<polyline class="series""#).count - 1, jobs.count)
        XCTAssertEqual(text.components(separatedBy: #"<circle class="point""#).count - 1, jobs.filter { $0.objective != nil }.count)
        XCTAssert(text.contains("job \(jobs[0].id): lr=\(jobs[0].params["lr"]!.canonicalJSON)"), "the legend names what varies")
        let asJSON = try cluster.cli(["plot", "\(s.sweep)", "--out", svg.path, "--json"])
        XCTAssertEqual(try JSONValue.parse(Data(asJSON.out.utf8)), ["out": .string(svg.path), "series": .int(jobs.count), "panels": 1], asJSON.out)
        let one = cluster.dir.appendingPathComponent("job.svg")
        XCTAssertEqual(try cluster.cli(["plot", "--job", "\(jobs[3].id)", "--out", one.path]).status, 0)
        XCTAssertEqual(try String(contentsOf: one, encoding: .utf8).components(separatedBy: #"<polyline class="series""#).count - 1, 2, "train and eval")
        // PNG: the SVG rendered by librsvg (a real SVG renderer reads it); CI installs it.
        let png = cluster.dir.appendingPathComponent("sweep.png")
        let r = try cluster.cli(["plot", "\(s.sweep)", "--out", png.path])
        if Cluster.succeeds(["rsvg-convert", "--version"]) || ProcessInfo.processInfo.environment["CI"] == "true" {
            XCTAssertEqual(r.status, 0, r.out)
            XCTAssertEqual(Array(try Data(contentsOf: png).prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "a PNG file")
        } else {
            XCTAssertEqual(r.status, 1)
            XCTAssert(r.out.contains("writing PNG needs rsvg-convert (apt-get install librsvg2-bin)"), r.out)
        }
    }
}
