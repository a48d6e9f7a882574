import Foundation
import XCTest
@testable import TunaEngine

/// The native forward against transformers' GptOssForCausalLM on the committed checkpoints
/// (MXFP4 experts, BF16 elsewhere). Tolerance: max|ours - ref| / max|ref| < 1e-4 over every
/// logit of every position, padding positions included; loss relative error < 1e-5.
final class GoldenTests: XCTestCase {
    static let logitTolerance = 1e-4
    static let lossTolerance = 1e-5

    /// Checks every case of `<dir>/reference.safetensors` and returns the worst logit error.
    @discardableResult
    static func checkModel(directory: URL, residency: GptOssModel.Residency = .resident,
                           label: String) throws -> Double {
        let model = try GptOssModel(directory: directory, residency: residency)
        let reference = try SafeTensorsFile(path: directory.appendingPathComponent("reference.safetensors").path)
        let cases = (reference.metadata["cases"] ?? "").split(separator: ",").map(String.init)
        XCTAssertFalse(cases.isEmpty, "\(label): reference lists no cases")
        var worst = 0.0
        for name in cases {
            let ref = try ReferenceCase(file: reference, name: name)
            let logits = try model.forward(ref.batch)
            XCTAssertEqual([logits.batchSize, logits.length, logits.vocabSize], ref.shape)
            let err = maxRelativeError(logits.values, ref.logits)
            let (loss, tokens) = try CrossEntropy.mean(logits, labels: ref.batch.labels ?? [])
            let lossErr = abs(loss - ref.loss) / abs(ref.loss)
            print("golden \(label)/\(name): logits max rel err \(String(format: "%.2e", err)), "
                  + "loss \(String(format: "%.6f", loss)) vs \(String(format: "%.6f", ref.loss)) "
                  + "(rel err \(String(format: "%.2e", lossErr)), \(tokens) tokens)")
            XCTAssertLessThan(err, logitTolerance, "\(label)/\(name) logits")
            XCTAssertLessThan(lossErr, lossTolerance, "\(label)/\(name) loss")
            XCTAssertGreaterThan(tokens, 0)
            // the chunked loss (no [N, V] logits) agrees with the loss of the full logits
            let (chunked, chunkedTokens) = try model.loss(ref.batch, chunkRows: 7)
            XCTAssertEqual(chunkedTokens, tokens)
            XCTAssertLessThan(abs(chunked - ref.loss) / abs(ref.loss), lossTolerance, "\(label)/\(name) chunked loss")
            worst = max(worst, err)
        }
        return worst
    }

    /// 4 layers sliding/full, window 4, top-2, YaRN truncate=false, transformers-5 config, 1 file.
    func testTopK2() throws {
        try Self.checkModel(directory: try Fixture.url("topk2"), label: "topk2")
    }

    /// 3 layers full/sliding/sliding, window 8, top-4, I != C, 8 heads over 2 kv heads, YaRN
    /// truncate=true, hub-style config (rope_scaling, experts_per_token), 2 shards + index.
    func testTopK4ShardedHubConfig() throws {
        try Self.checkModel(directory: try Fixture.url("topk4"), label: "topk4")
    }

    /// Streaming (dequantize one layer per use, then free) computes the same bits as resident.
    func testStreamingEqualsResident() throws {
        let dir = try Fixture.url("topk2")
        let reference = try SafeTensorsFile(path: dir.appendingPathComponent("reference.safetensors").path)
        let batch = try ReferenceCase(file: reference, name: "padded").batch
        let resident = try GptOssModel(directory: dir, residency: .resident).forward(batch)
        let streaming = try GptOssModel(directory: dir, residency: .streaming).forward(batch)
        XCTAssertEqual(resident.values, streaming.values)
        print("peak RSS after streaming forward: \(Memory.peakRSS().map { "\($0 / 1024) KiB" } ?? "n/a")")
    }

    /// Batch.packed builds the same batch the golden packed case encodes (positions restart,
    /// segments split, first token of each sequence unscored), and the forward agrees.
    func testPackedHelperMatchesGolden() throws {
        let dir = try Fixture.url("topk2")
        let reference = try SafeTensorsFile(path: dir.appendingPathComponent("reference.safetensors").path)
        let ref = try ReferenceCase(file: reference, name: "packed")
        var rows: [[[Int32]]] = []
        let t = ref.batch.length
        for b in 0..<ref.batch.batchSize {
            var seqs: [[Int32]] = []
            for i in 0..<t {
                if i == 0 || ref.batch.segments[b * t + i] != ref.batch.segments[b * t + i - 1] { seqs.append([]) }
                seqs[seqs.count - 1].append(ref.batch.tokens[b * t + i])
            }
            rows.append(seqs)
        }
        let packed = try Batch.packed(rows)
        XCTAssertEqual(packed.positions, ref.batch.positions)
        XCTAssertEqual(packed.segments, ref.batch.segments)
        let logits = try GptOssModel(directory: dir).forward(packed)
        let err = maxRelativeError(logits.values, ref.logits)
        print("golden topk2/packed via Batch.packed: logits max rel err \(String(format: "%.2e", err))")
        XCTAssertLessThan(err, Self.logitTolerance)
    }

    /// Segments are load-bearing: without them the packed logits differ grossly.
    func testPackingWithoutSegmentsDiffers() throws {
        let dir = try Fixture.url("topk2")
        let reference = try SafeTensorsFile(path: dir.appendingPathComponent("reference.safetensors").path)
        let ref = try ReferenceCase(file: reference, name: "packed")
        var batch = ref.batch
        batch.segments = [Int32](repeating: 0, count: batch.segments.count)
        let err = maxRelativeError(try GptOssModel(directory: dir).forward(batch).values, ref.logits)
        print("packed without segments: max rel err \(String(format: "%.2e", err)) (should be large)")
        XCTAssertGreaterThan(err, 1e-2)
    }
}

/// The goldens are sensitive to every modelled detail: perturbing one setting (same weights)
/// moves the logits far past the tolerance. Guards against a golden that cannot fail.
final class GoldenSensitivityTests: XCTestCase {
    func perturbedError(_ fixture: String, _ change: (inout GptOssConfig) -> Void) throws -> Double {
        let dir = try Fixture.url(fixture)
        let checkpoint = try GptOssCheckpoint(directory: dir)
        var config = checkpoint.config
        change(&config)
        let model = try GptOssModel(checkpoint: checkpoint, config: config, residency: .resident)
        let reference = try SafeTensorsFile(path: dir.appendingPathComponent("reference.safetensors").path)
        var worst = 0.0
        for name in ["single", "padded", "packed"] {
            let ref = try ReferenceCase(file: reference, name: name)
            worst = max(worst, maxRelativeError(try model.forward(ref.batch).values, ref.logits))
        }
        return worst
    }

    func testEachSettingMatters() throws {
        let perturbations: [(String, String, (inout GptOssConfig) -> Void)] = [
            ("topk2", "sliding_window 4 -> 5", { $0.slidingWindow = 5 }),
            ("topk2", "all layers full attention", { $0.layerTypes = Array(repeating: "full_attention", count: 4) }),
            ("topk2", "YaRN truncate false -> true", { $0.ropeParameters?.truncate = true }),
            ("topk2", "YaRN factor 32 -> 1", { $0.ropeParameters?.factor = 1 }),
            ("topk2", "top-k 2 -> 3", { $0.numExpertsPerTok = 3 }),
            ("topk2", "swiglu limit 7 -> 0.5", { $0.swigluLimit = 0.5 }),
            ("topk4", "YaRN truncate true -> false", { $0.ropeScaling?.truncate = false }),
            ("topk4", "rope_theta 150000 -> 10000", { $0.ropeTheta = 10000 }),
        ]
        for (fixture, what, change) in perturbations {
            let err = try perturbedError(fixture, change)
            print("sensitivity \(fixture): \(what): max rel err \(String(format: "%.2e", err))")
            XCTAssertGreaterThan(err, 10 * GoldenTests.logitTolerance, "\(fixture): \(what) went unnoticed")
        }
    }
}
