import Foundation
import XCTest
@testable import TunaText
import TunaRandom

/// Splitting, truncation and the end-to-end `loadDataset`.
final class DatasetLoadTests: XCTestCase {
    struct SplitGoldens: Decodable {
        struct Case: Decodable {
            let n: Int
            let val_fraction: Double
            let seed: UInt64
            let validation: [Int]
        }
        let splitmix64_seed0_first5: [UInt64]
        let cases: [Case]
    }

    /// The split equals an independent Python implementation of the documented algorithm.
    func testSplitMatchesPythonReference() throws {
        let goldens = try Fixture.decode(SplitGoldens.self, "split_goldens.json")
        var rng = SplitMix64(seed: 0)
        XCTAssertEqual((0..<5).map { _ in rng.next() }, goldens.splitmix64_seed0_first5)
        XCTAssertEqual(goldens.splitmix64_seed0_first5.first, 0xE220_A839_7B1D_CDAF, "Vigna's reference output for seed 0")
        for c in goldens.cases {
            XCTAssertEqual(DatasetSplit.validationIndices(count: c.n, valFraction: c.val_fraction, seed: c.seed), c.validation,
                           "n=\(c.n) fraction=\(c.val_fraction) seed=\(c.seed)")
        }
    }

    func testSplitProperties() {
        let a = DatasetSplit.validationIndices(count: 1000, valFraction: 0.1, seed: 7)
        XCTAssertEqual(a.count, 100)
        XCTAssertEqual(a, DatasetSplit.validationIndices(count: 1000, valFraction: 0.1, seed: 7))
        XCTAssertNotEqual(a, DatasetSplit.validationIndices(count: 1000, valFraction: 0.1, seed: 8))
        XCTAssertEqual(Set(a).count, 100)
        XCTAssertTrue(a.allSatisfy { (0..<1000).contains($0) })
        XCTAssertEqual(DatasetSplit.validationIndices(count: 0, valFraction: 0.5, seed: 1), [])
        XCTAssertEqual(DatasetSplit.validationIndices(count: 5, valFraction: 0, seed: 1), [])
    }

    func testLoadSplitsTruncatesAndCounts() throws {
        let tokenizer = try Fixture.harmony()
        let dir = try Fixture.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("rows.jsonl")
        var lines: [String] = []
        for i in 0..<40 {
            // Every 10th response is long enough to be truncated.
            let response = i % 10 == 0 ? String(repeating: "word ", count: 200) : "answer \(i)"
            lines.append(#"{"prompt": "question \#(i)", "response": "\#(response)"}"#)
        }
        lines.insert("", at: 5)  // one blank row
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: url)

        let template = ChatTemplate.imStart(system: "You are a helpful assistant.")
        let spec = DatasetSpec(path: url.path, format: .jsonl, valFraction: 0.25, seed: 42, maxSeqLen: 64)
        let loaded = try loadDataset(spec, tokenizer: tokenizer, template: template)
        XCTAssertEqual(loaded.stats.rowsRead, 41)
        XCTAssertEqual(loaded.stats.emptyDropped, 1)
        XCTAssertEqual(loaded.stats.truncated, 4)
        XCTAssertEqual(loaded.stats.withoutTrainedTokens, 0)
        XCTAssertEqual(loaded.stats.validationExamples, 10)
        XCTAssertEqual(loaded.stats.trainExamples, 30)
        XCTAssertEqual(loaded.train.count + loaded.validation.count, 40)
        let all = loaded.train + loaded.validation
        XCTAssertTrue(all.allSatisfy { $0.tokens.count <= 64 && $0.tokens.count == $0.lossMask.count })
        XCTAssertEqual(all.map(\.tokens.count).reduce(0, +), loaded.stats.totalTokens)
        XCTAssertEqual(all.map(\.trainedTokenCount).reduce(0, +), loaded.stats.trainedTokens)

        // The validation set is exactly the documented split, in file order.
        let unsplit = try loadDataset(DatasetSpec(path: url.path, format: .jsonl, maxSeqLen: 64), tokenizer: tokenizer, template: template)
        XCTAssertEqual(unsplit.validation, [])
        let expected = DatasetSplit.validationIndices(count: 40, valFraction: 0.25, seed: 42).map { unsplit.train[$0] }
        XCTAssertEqual(loaded.validation, expected)
        // Same seed, same split; another seed, another split.
        XCTAssertEqual(try loadDataset(spec, tokenizer: tokenizer, template: template), loaded)
        var other = spec
        other.seed = 43
        XCTAssertNotEqual(try loadDataset(other, tokenizer: tokenizer, template: template).validation, loaded.validation)

        // Each example is the template's rendering of its row, cut to 64 tokens.
        let first = try template.render(Conversation(prompt: "question 0", response: String(repeating: "word ", count: 200)), tokenizer: tokenizer)
        XCTAssertEqual(unsplit.train[0], RenderedExample(tokens: Array(first.tokens.prefix(64)), lossMask: Array(first.lossMask.prefix(64))))
    }

    func testTruncationThatRemovesAllTrainedTokensIsCounted() throws {
        let tokenizer = try Fixture.harmony()
        let spec = DatasetSpec(path: try Fixture.url("datasets/prompts.jsonl").path, format: .jsonl, maxSeqLen: 5)
        let loaded = try loadDataset(spec, tokenizer: tokenizer, template: .harmony(HarmonyOptions()))
        XCTAssertEqual(loaded.stats.truncated, 3)
        XCTAssertEqual(loaded.stats.withoutTrainedTokens, 3, "5 tokens of harmony are all system prompt")
        XCTAssertEqual(loaded.train.count, 3, "kept, not silently dropped")
    }
}
