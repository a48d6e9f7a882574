import Foundation
import XCTest
@testable import TunaEngine
import TunaText
import TunaRandom

/// `TinyModel.write`: a real-layout gpt-oss checkpoint that GptOssModel loads, deterministic
/// from its seed, with unsaturated weights. Tests/Python/test_tiny_model.py runs
/// `testWriteForPythonCheck` to compare it with transformers.
final class TinyModelTests: XCTestCase {
    static let small = TinyModel.Spec(layers: 2, experts: 4, vocabSize: 320, slidingWindow: 4)

    func scratch() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tiny-model-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    /// Rows of random tokens with every position labelled (labels = tokens, as a packed LM batch).
    static func randomBatch(rows: Int, length: Int, vocab: Int, seed: UInt64) throws -> Batch {
        var rng = SplitMix64(seed: seed)
        let tokens = (0..<rows).map { _ in (0..<length).map { _ in Int32(rng.next() % UInt64(vocab)) } }
        return try Batch(tokens: tokens, labels: tokens)
    }

    func testLayoutMatchesRealCheckpoints() throws {
        let dir = try scratch()
        try TinyModel.write(to: dir, spec: Self.small, seed: 1)
        let file = try SafeTensorsFile(path: dir.appendingPathComponent("model.safetensors").path)
        XCTAssertEqual(file.metadata["format"], "pt")
        let gateUp = try file.info("model.layers.1.mlp.experts.gate_up_proj_blocks")
        XCTAssertEqual(gateUp.dtype, .u8)
        XCTAssertEqual(gateUp.shape, [4, 128, 2, 16])
        XCTAssertEqual(try file.info("model.layers.1.mlp.experts.down_proj_scales").shape, [4, 64, 2])
        XCTAssertEqual(try file.info("model.layers.1.mlp.experts.down_proj_bias").dtype, .bf16)
        XCTAssertEqual(try file.info("model.layers.0.self_attn.sinks").dtype, .bf16)
        XCTAssertEqual(try file.info("lm_head.weight").shape, [320, 64])
        XCTAssertNil(file.tensors["model.layers.0.mlp.experts.gate_up_proj"], "experts must be MXFP4 only")
        XCTAssertEqual(file.tensors.count, 3 + 2 * 19)

        let config = try GptOssConfig.load(from: dir.appendingPathComponent("config.json"))
        XCTAssertTrue(config.isMXFP4)
        XCTAssertEqual(config.resolvedLayerTypes, ["sliding_attention", "full_attention"])
        XCTAssertEqual(config.resolvedRope, RopeParameters(ropeType: "yarn", ropeTheta: 150000, factor: 32, betaFast: 32,
                                                           betaSlow: 1, originalMaxPositionEmbeddings: 4096, truncate: false))
        XCTAssertEqual(config.topK, 2)
    }

    func testDeterministicFromSeed() throws {
        let (a, b, c) = (try scratch(), try scratch(), try scratch())
        try TinyModel.write(to: a, spec: Self.small, seed: 7)
        try TinyModel.write(to: b, spec: Self.small, seed: 7)
        try TinyModel.write(to: c, spec: Self.small, seed: 8)
        let bytes = { (d: URL) in try Data(contentsOf: d.appendingPathComponent("model.safetensors")) }
        XCTAssertEqual(try bytes(a), try bytes(b))
        XCTAssertNotEqual(try bytes(a), try bytes(c))
        XCTAssertEqual(try Data(contentsOf: a.appendingPathComponent("config.json")),
                       try Data(contentsOf: c.appendingPathComponent("config.json")))
    }

    /// Expert weights come out at the intended scale (std 1/sqrt(in), within sampling and FP4
    /// noise), and a random-token loss is near ln(V): the model starts unsaturated.
    func testWeightScalesAndInitialLoss() throws {
        let dir = try scratch()
        try TinyModel.write(to: dir, spec: Self.small, seed: 3)
        let checkpoint = try GptOssCheckpoint(directory: dir)
        let moe = try checkpoint.layer(0).moe
        for (name, w, inFeatures) in [("gate_up", moe.gateUp, 64), ("down", moe.down, 64)] {
            let std = (w.reduce(0.0) { $0 + Double($1 * $1) } / Double(w.count)).squareRoot()
            XCTAssertEqual(std, 1 / Double(inFeatures).squareRoot(), accuracy: 0.01, name)
        }
        let model = try GptOssModel(checkpoint: checkpoint)
        let (loss, tokens) = try model.loss(try Self.randomBatch(rows: 2, length: 32, vocab: 320, seed: 1))
        print("tiny model: random-token loss \(loss) over \(tokens) tokens (ln V = \(log(320.0)))")
        XCTAssertEqual(tokens, 62)
        XCTAssertTrue(loss > log(320.0) - 0.5 && loss < log(320.0) + 3, "initial loss \(loss)")
    }

    /// With TUNA_TINY_MODEL_DIR set (Tests/Python/test_tiny_model.py): writes the demo model
    /// and its TinyTokenizer there, plus what the script compares against transformers and
    /// `tokenizers`: swift_logits.safetensors for a fixed batch and swift_tokens.json for texts.
    /// Also times one forward+loss over a 16 x 64 batch of the demo spec.
    func testWriteForPythonCheck() throws {
        guard let path = ProcessInfo.processInfo.environment["TUNA_TINY_MODEL_DIR"], !path.isEmpty else {
            throw XCTSkip("TUNA_TINY_MODEL_DIR not set (run python3 -m pytest Tests/Python/test_tiny_model.py)")
        }
        let dir = URL(fileURLWithPath: path)
        let spec = TinyModel.Spec.demo
        try TinyModel.write(to: dir, spec: spec, seed: 42)
        // TunaTextTests' committed o200k_base.tiktoken (the script passes its path; #filePath is the fallback)
        let tiktoken = ProcessInfo.processInfo.environment["TUNA_O200K_TIKTOKEN"].map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("TunaTextTests/Fixtures/o200k_base.tiktoken")
        let vocab = try TinyTokenizer.write(to: dir.appendingPathComponent("tokenizer.json"), tiktokenFile: tiktoken)
        XCTAssertLessThanOrEqual(vocab, spec.vocabSize)
        let tokenizer = try Tokenizer.load(fromCheckpoint: dir)
        XCTAssertEqual(tokenizer.vocabularySize, vocab)
        XCTAssertEqual(tokenizer.specialTokenID("<|return|>").map(Int.init), spec.eosTokenID)
        XCTAssertEqual(tokenizer.specialTokenID("<|endoftext|>").map(Int.init), spec.padTokenID)

        // texts: one per line of the file the script wrote (or a default), encoded with specials
        let textsURL = dir.appendingPathComponent("texts.json")
        let texts = (try? JSONDecoder().decode([String].self, from: Data(contentsOf: textsURL)))
            ?? ["Hello, world! 12 + 34 = 46<|end|>"]
        let ids = texts.map { tokenizer.encode($0, allowedSpecial: .all).map(Int.init) }
        try JSONEncoder().encode(ids).write(to: dir.appendingPathComponent("swift_tokens.json"))

        let model = try GptOssModel(directory: dir)
        let batch = try Self.randomBatch(rows: 2, length: 24, vocab: spec.vocabSize, seed: 5)
        let logits = try model.forward(batch)
        var writer = SafeTensorsWriter(metadata: ["producer": "TunaEngine"])
        try writer.add("input_ids", dtype: .i64, shape: [2, 24],
                       bytes: batch.tokens.flatMap { t in withUnsafeBytes(of: Int64(t).littleEndian) { Array($0) } })
        try writer.add("logits", shape: [2, 24, spec.vocabSize], floats: logits.values)
        try writer.add("loss", shape: [], floats: [Float(try model.loss(batch).loss)])
        try writer.write(to: dir.appendingPathComponent("swift_logits.safetensors"))

        let big = try Self.randomBatch(rows: 16, length: 64, vocab: vocab, seed: 6)
        _ = try model.loss(big)  // warm-up
        let start = Date()
        let rounds = 3
        for _ in 0..<rounds { _ = try model.loss(big) }
        print(String(format: "tiny demo model: forward+loss over 16x64 tokens %.1f ms", Date().timeIntervalSince(start) * 1000 / Double(rounds)))
    }
}
