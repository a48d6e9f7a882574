import Foundation
import XCTest
@testable import TunaEngine
import TunaRandom

/// Expert pruning on small random gpt-oss checkpoints (MXFP4 experts, made by TinyModel).
final class PruningTests: XCTestCase {
    var dir: URL!
    let spec = TinyModel.Spec(hiddenSize: 64, layers: 3, heads: 4, kvHeads: 2, headDim: 16, experts: 8, expertsPerToken: 2,
                              intermediateSize: 64, vocabSize: 256, slidingWindow: 4)

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tuna-prune-\(UUID().uuidString.prefix(8))")
        try TinyModel.write(to: dir.appendingPathComponent("base"), spec: spec, seed: 21)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func batch(seed: UInt64 = 1) throws -> Batch {
        var rng = SplitMix64(seed: seed)
        let rows = (0..<3).map { _ in (0..<12).map { _ in Int32(rng.next() % 256) } }
        return try Batch(tokens: rows, attentionMask: [Array(repeating: 1, count: 12), Array(repeating: 1, count: 9) + [0, 0, 0],
                                                         Array(repeating: 1, count: 12)], labels: rows)
    }

    func profile(_ model: GptOssModel, _ b: Batch) throws -> ExpertProfile {
        var p = ExpertProfile(layers: model.config.numHiddenLayers, experts: model.config.numLocalExperts)
        _ = try model.forward(b) { l, a in p.add(layer: l, a, attentionMask: b.attentionMask, hidden: model.config.hiddenSize, topK: model.config.topK) }
        return p
    }

    func testKeepingEveryExpertIsBitIdentical() throws {
        let base = try GptOssCheckpoint(directory: dir.appendingPathComponent("base"))
        let all = Array(repeating: Array(0..<8), count: 3)
        let (before, after) = try ExpertPruner.write(base: base, keep: all, to: dir.appendingPathComponent("all"))
        XCTAssertEqual(before, after)
        let b = try batch()
        XCTAssertEqual(try GptOssModel(checkpoint: base).forward(b).values,
                       try GptOssModel(directory: dir.appendingPathComponent("all")).forward(b).values)
    }

    func testPrunedCheckpointEqualsTheMaskedModel() throws {
        let base = try GptOssCheckpoint(directory: dir.appendingPathComponent("base"))
        let model = try GptOssModel(checkpoint: base)
        let b = try batch()
        let p = try profile(model, b)
        for score in ExpertProfile.Score.allCases {
            let keep = try p.keep(5, by: score, topK: 2)
            XCTAssertTrue(keep.allSatisfy { $0.count == 5 })
            let masks = keep.map { k in (0..<8).map { k.contains($0) } }
            let masked = try model.forward(b, expertMasks: masks)
            let out = dir.appendingPathComponent("pruned-\(score.rawValue)")
            let (before, after) = try ExpertPruner.write(base: base, keep: keep, to: out)
            XCTAssertLessThan(after.parameters, before.parameters)
            XCTAssertLessThan(after.bytes, before.bytes)
            let pruned = try GptOssModel(directory: out)
            XCTAssertEqual(pruned.config.numLocalExperts, 5)
            // same experts in the same order, so the same sums in the same order: bit for bit
            XCTAssertEqual(try pruned.forward(b).values, masked.values, "\(score)")
            XCTAssertNotEqual(masked.values, try model.forward(b).values, "pruning 3 of 8 experts changes something")
        }
    }

    func testPruningExpertsCalibrationNeverUsesChangesNothingThere() throws {
        // A base whose routers can only pick experts {1, 3, 4, 6}: the others get bias -1e4.
        let source = try GptOssCheckpoint(directory: dir.appendingPathComponent("base"))
        let used = [1, 3, 4, 6]
        var w = SafeTensorsWriter(metadata: ["format": "pt"])
        for name in source.store.names {
            let info = try source.store.info(name)
            if name.hasSuffix("mlp.router.bias") {
                let bias = (0..<8).map { used.contains($0) ? Float(0.1) : -1e4 }
                try w.add(name, shape: info.shape, floats: bias)
            } else {
                try w.add(name, dtype: info.dtype, shape: info.shape, bytes: try source.store.file(for: name).withRawBytes(name) { Array($0) })
            }
        }
        let biased = dir.appendingPathComponent("biased")
        try FileManager.default.createDirectory(at: biased, withIntermediateDirectories: true)
        try w.write(to: biased.appendingPathComponent("model.safetensors"))
        try FileManager.default.copyItem(at: source.directory.appendingPathComponent("config.json"), to: biased.appendingPathComponent("config.json"))

        let model = try GptOssModel(directory: biased)
        let b = try batch(seed: 5)
        let p = try profile(model, b)
        for l in 0..<3 { for e in 0..<8 where !used.contains(e) { XCTAssertEqual(p.counts[l][e], 0) } }
        let keep = try p.keep(4, by: .frequency, topK: 2, keepSuperExperts: false)
        XCTAssertEqual(keep, Array(repeating: used, count: 3))
        XCTAssertEqual(p.massShare(kept: keep).map { ($0 * 1e6).rounded() / 1e6 }, [1, 1, 1])
        try ExpertPruner.write(base: GptOssCheckpoint(directory: biased), keep: keep, to: dir.appendingPathComponent("cut"))
        XCTAssertEqual(try GptOssModel(directory: dir.appendingPathComponent("cut")).forward(b).values, try model.forward(b).values)
    }

    func testBadKeepCountsAreClearErrors() throws {
        let model = try GptOssModel(directory: dir.appendingPathComponent("base"))
        let p = try profile(model, try batch())
        for n in [0, 1, 9] {
            assertEngineError(try p.keep(n, by: .reap, topK: 2), mentions: ["prune.keep: \(n)", "between the experts per token (2)"])
        }
        let base = try GptOssCheckpoint(directory: dir.appendingPathComponent("base"))
        assertEngineError(try ExpertPruner.write(base: base, keep: Array(repeating: [0], count: 3), to: dir.appendingPathComponent("x")),
                          mentions: ["fewer than the 2 experts per token"])
        assertEngineError(try ExpertPruner.write(base: base, keep: [[0, 1], [1, 0], [0, 1]], to: dir.appendingPathComponent("x")),
                          mentions: ["layer 1 keeps [1, 0]"])
        assertEngineError(try model.forward(try batch(), expertMasks: Array(repeating: [true] + Array(repeating: false, count: 7), count: 3)),
                          mentions: ["fewer than experts per token"])
    }

    func testProfileRoundTripsThroughItsFile() throws {
        let model = try GptOssModel(directory: dir.appendingPathComponent("base"))
        let p = try profile(model, try batch())
        XCTAssertEqual(p.tokens, 33)
        XCTAssertEqual(p.counts.map { $0.reduce(0, +) }, [66, 66, 66], "top-2 of 33 real tokens per layer")
        let url = dir.appendingPathComponent("profile.safetensors")
        try p.save(to: url)
        let q = try ExpertProfile.load(from: url)
        XCTAssertEqual(q.tokens, p.tokens)
        XCTAssertEqual(try q.keep(4, by: .easyEP, topK: 2), try p.keep(4, by: .easyEP, topK: 2))
    }
}
