import Foundation
import XCTest
@testable import TunaText
import TunaRandom

/// The Swift tokenizer against tiktoken itself (goldens from Tests/Python/reference/text_goldens.py).
final class TokenizerGoldenTests: XCTestCase {
    struct Goldens: Decodable {
        struct Case: Decodable {
            let text: String
            let o200k_base: [Int32]
            let o200k_harmony_ordinary: [Int32]
            let o200k_harmony_all_special: [Int32]
            let o200k_harmony_only_start_end: [Int32]
        }
        struct Fuzz: Decodable {
            let text: String
            let ids: [Int32]
        }
        let cases: [Case]
        let fuzz: [Fuzz]
        let long: [Fuzz]
    }

    func testCorpusMatchesTiktoken() throws {
        let tokenizer = try Fixture.harmony()
        let base = try Tokenizer(tiktokenFile: Fixture.url("o200k_base.tiktoken"),
                                 specialTokens: HarmonySpecialTokens.o200kBase)
        let goldens = try Fixture.decode(Goldens.self, "tokenizer_goldens.json")
        let corpus = try Fixture.decode([String].self, "tokenizer_corpus.json")
        XCTAssertEqual(goldens.cases.map(\.text), corpus, "goldens are stale; rerun reference.text_goldens")
        XCTAssertGreaterThan(goldens.cases.count, 50)
        for c in goldens.cases {
            XCTAssertEqual(base.encode(c.text), c.o200k_base, "o200k_base: \(c.text.debugDescription)")
            XCTAssertEqual(tokenizer.encode(c.text), c.o200k_harmony_ordinary, "ordinary: \(c.text.debugDescription)")
            XCTAssertEqual(tokenizer.encode(c.text, allowedSpecial: .all), c.o200k_harmony_all_special,
                           "all specials: \(c.text.debugDescription)")
            XCTAssertEqual(tokenizer.encode(c.text, allowedSpecial: .only(["<|start|>", "<|end|>"])),
                           c.o200k_harmony_only_start_end, "only start/end: \(c.text.debugDescription)")
        }
    }

    /// 400 seeded random strings dense in the pre-tokenizer's edge cases.
    func testFuzzStringsMatchTiktoken() throws {
        let tokenizer = try Fixture.harmony()
        let goldens = try Fixture.decode(Goldens.self, "tokenizer_goldens.json")
        XCTAssertEqual(goldens.fuzz.count, 400)
        var mismatches = 0
        for c in goldens.fuzz where tokenizer.encode(c.text) != c.ids {
            mismatches += 1
            XCTFail("fuzz mismatch for \(c.text.debugDescription): \(tokenizer.encode(c.text)) != \(c.ids)")
        }
        XCTAssertEqual(mismatches, 0)
    }

    /// Single pieces of thousands of bytes (the heap-based merge path) against tiktoken.
    func testLongPiecesMatchTiktoken() throws {
        let tokenizer = try Fixture.harmony()
        let goldens = try Fixture.decode(Goldens.self, "tokenizer_goldens.json")
        XCTAssertEqual(goldens.long.count, 4)
        for c in goldens.long {
            XCTAssertGreaterThan(c.text.utf8.count, 256)
            XCTAssertEqual(tokenizer.encode(c.text), c.ids, String(c.text.prefix(20)))
        }
    }

    /// The O(n log n) long-piece merge gives exactly the scan's tokens: force it on every
    /// piece of at least 2 bytes and compare over the corpus and the fuzz strings.
    func testLongPieceMergeEqualsScan() throws {
        let tokenizer = try Fixture.harmony()
        let goldens = try Fixture.decode(Goldens.self, "tokenizer_goldens.json")
        for text in goldens.cases.map(\.text) + goldens.fuzz.map(\.text) {
            XCTAssertEqual(tokenizer.encode(text, longPieceThreshold: 1), tokenizer.encode(text), text.debugDescription)
        }
    }

    /// A single 200 kB piece (letters only, so the pre-tokenizer cannot split it) must not
    /// take quadratic time, and must still decode to itself.
    func testHugePieceIsFastAndExact() throws {
        let tokenizer = try Fixture.harmony()
        var rng = SplitMix64(seed: 11)
        let letters = Array("abcdefghijklmnopqrstuvwxyz")
        let text = String((0..<200_000).map { _ in letters[Int(rng.below(26))] })
        let start = Date()
        let ids = tokenizer.encode(text)
        XCTAssertLessThan(Date().timeIntervalSince(start), 20, "long-piece merge should be O(n log n)")
        XCTAssertEqual(try tokenizer.decode(ids), text)
        let prefix = String(text.prefix(3000))
        XCTAssertEqual(tokenizer.encode(prefix, longPieceThreshold: 1), tokenizer.encode(prefix, longPieceThreshold: 1 << 30))
    }

    func testDecodeRoundTripsCorpus() throws {
        let tokenizer = try Fixture.harmony()
        for text in try Fixture.decode([String].self, "tokenizer_corpus.json") {
            XCTAssertEqual(try tokenizer.decode(tokenizer.encode(text)), text)
            XCTAssertEqual(try tokenizer.decode(tokenizer.encode(text, allowedSpecial: .all)), text)
        }
    }

    func testHarmonySpecialTokenIDs() throws {
        let tokenizer = try Fixture.harmony()
        let expected: [String: Int32] = [
            "<|startoftext|>": 199998, "<|endoftext|>": 199999, "<|return|>": 200002,
            "<|constrain|>": 200003, "<|channel|>": 200005, "<|start|>": 200006, "<|end|>": 200007,
            "<|message|>": 200008, "<|call|>": 200012, "<|reserved_200000|>": 200000,
            "<|reserved_201087|>": 201087, "<|endofprompt|>": 200018,
        ]
        for (name, id) in expected {
            XCTAssertEqual(tokenizer.specialTokenID(name), id, name)
        }
        XCTAssertNil(tokenizer.specialTokenID("<|reserved_201088|>"))
        XCTAssertNil(tokenizer.specialTokenID("<|im_start|>"))
        XCTAssertEqual(tokenizer.vocabularySize, 201088)
        XCTAssertEqual(try tokenizer.decode([200006, 200007]), "<|start|><|end|>")
        XCTAssertTrue(tokenizer.isSpecial(200012))
        XCTAssertFalse(tokenizer.isSpecial(1000))
    }

    func testUnknownIDThrows() throws {
        let tokenizer = try Fixture.harmony()
        XCTAssertThrowsError(try tokenizer.decode([201088])) { error in
            XCTAssertEqual(error as? TextError, .unknownTokenID(201088))
        }
        XCTAssertThrowsError(try tokenizer.decode([-1]))
    }

    func testDecodeOfSplitCharacterIsReplacement() throws {
        let tokenizer = try Fixture.harmony()
        // "😀" is four bytes; a truncated byte sequence must not crash and decodes lossily.
        let ids = tokenizer.encode("😀")
        let bytes = try tokenizer.decodeBytes(ids)
        XCTAssertEqual(bytes, Array("😀".utf8))
        if ids.count > 1 {
            XCTAssertTrue(try tokenizer.decode(Array(ids.dropLast())).contains("\u{FFFD}"))
        }
    }
}
