import Foundation
import XCTest
import TunaRandom
@testable import TunaEngine

/// The generator's own invariants (transformers' `generate` is the reference in
/// Tests/Python/test_generate.py): a prompt's tokens do not depend on the prompts batched with
/// it, prefills packed over several rows included; the cache's first token is the full
/// forward's prediction; stops and limits.
final class GeneratorTests: XCTestCase {
    var generator: Generator!
    var prompts: [[Int32]] = []

    override func setUpWithError() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("generator-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        try TinyModel.write(to: dir, spec: TinyModel.Spec(layers: 2, experts: 4, vocabSize: 320, slidingWindow: 8), seed: 3)
        generator = Generator(model: try GptOssModel(directory: dir))
        var rng = SplitMix64(seed: 9)
        // 12 prompts, 1,890 tokens: more than one packed prefill row (Generator.packedRow)
        prompts = (0..<12).map { i in (0..<(40 + 25 * i)).map { _ in Int32(rng.below(320)) } }
        XCTAssertGreaterThan(prompts.reduce(0) { $0 + $1.count }, Generator.packedRow)
    }

    func testEachPromptGetsTheTokensItGetsAlone() throws {
        let together = try generator.generate(prompts: prompts, maxNewTokens: 12)
        for (i, prompt) in prompts.enumerated() {
            let alone = try generator.generate(prompts: [prompt], maxNewTokens: 12)
            XCTAssertEqual(together[i].tokens, alone[0].tokens, "prompt \(i)")
            XCTAssertEqual(together[i].finish, .length)
        }
        XCTAssertGreaterThan(Set(together.map(\.tokens)).count, 6, "different prompts, different continuations")
    }

    /// Each step's cached logits against the full forward's (no cache) over the same sequence,
    /// and `generate`'s tokens are those logits' argmax. The long prompt's sliding-layer cache is
    /// cut at the prefill, the short one's while decoding (past 2W + 64 = 80 tokens).
    func testCachedDecodingEqualsFullForwards() throws {
        for (prompt, new) in [(prompts[3], 10), (prompts[0], 60)] {
            var caches = [KVCache(config: generator.model.config)]
            var logits = try generator.prefill([prompt], caches: &caches)
            var sequence = prompt
            for step in 0..<new {
                let full = Array(try generator.model.forward(Batch(tokens: [sequence]))[0, sequence.count - 1])
                XCTAssertLessThan(maxRelativeError(logits, full), 1e-5, "prompt of \(prompt.count), step \(step)")
                let token = Int32(logits.indices.max { logits[$0] < logits[$1] || (logits[$0] == logits[$1] && $0 > $1) }!)
                sequence.append(token)
                logits = try generator.decode([token], sequences: [0], positions: [Int32(sequence.count - 1)], caches: &caches)
            }
            XCTAssertEqual(try generator.generate(prompts: [prompt], maxNewTokens: new)[0].tokens, Array(sequence.dropFirst(prompt.count)))
        }
    }

    func testBatchesOfAnySizeGiveTheSameTokensAndArePassedOnInOrder() throws {
        let sampled = SamplingSettings(temperature: 1, seed: 4)
        let all = try generator.generate(prompts: prompts, maxNewTokens: 5, sampling: sampled)
        var seen: [Int] = []
        let inFives = try generator.generate(prompts: prompts, maxNewTokens: 5, sampling: sampled, batchSize: 5, onBatch: { start, batch in
            seen.append(start)
            XCTAssertEqual(batch.count, min(5, self.prompts.count - start))
        })
        XCTAssertEqual(inFives, all)
        XCTAssertEqual(seen, [0, 5, 10])
    }

    func testStopTokensAndLimits() throws {
        let free = try generator.generate(prompts: [prompts[0], prompts[1]], maxNewTokens: 9)
        let stop = free[0].tokens[4]
        let first = free[0].tokens.firstIndex(of: stop)!
        let stopped = try generator.generate(prompts: [prompts[0], prompts[1]], maxNewTokens: 9, stopTokens: [stop])
        XCTAssertEqual(stopped[0].tokens, Array(free[0].tokens[...first]), "ends at the stop token, which it keeps")
        XCTAssertEqual(stopped[0].finish, .stop)
        let other = free[1].tokens.firstIndex(of: stop).map { Array(free[1].tokens[...$0]) } ?? free[1].tokens
        XCTAssertEqual(stopped[1].tokens, other, "the other sequence runs on")
        XCTAssertEqual(try generator.generate(prompts: [prompts[0]], maxNewTokens: 0)[0].tokens, [])
        XCTAssertThrowsError(try generator.generate(prompts: [[]], maxNewTokens: 3))
        XCTAssertThrowsError(try generator.generate(prompts: [[5]], maxNewTokens: 3, sampling: SamplingSettings(topP: 2)))
        XCTAssertThrowsError(try generator.generate(prompts: [[400]], maxNewTokens: 3), "a token outside the vocabulary")
    }
}
