import Foundation
import XCTest
@testable import TunaText

/// `TinyTokenizer`: o200k cut to its first K ranks with the harmony specials renumbered to K...
final class TinyTokenizerTests: XCTestCase {
    func write(k: Int = 1024, s: Int = 64) throws -> (Tokenizer, URL) {
        let dir = try Fixture.scratchDirectory()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let size = try TinyTokenizer.write(to: dir.appendingPathComponent("tokenizer.json"),
                                           tiktokenFile: try Fixture.url("o200k_base.tiktoken"), ordinaryTokens: k, specialTokens: s)
        XCTAssertEqual(size, k + s)
        return (try Tokenizer.load(fromCheckpoint: dir), dir)
    }

    /// The truncation argument: every rank r in 256..<K is the BPE of its bytes over ranks < r
    /// ending in exactly two parts (so merges never need a rank >= K), and 0..<256 are the bytes.
    func testFirstRanksAreClosedUnderMerges() throws {
        let full = try Fixture.harmony()
        let tokens = (0..<4096).map { full.tokenBytes(Int32($0))! }
        XCTAssertEqual(Set(tokens[0..<256].map { $0.count == 1 ? Int($0[0]) : -1 }), Set(0..<256))
        let merges = try TinyTokenizer.merges(tokens)
        XCTAssertEqual(merges.count, 4096 - 256)
        var rankOf: [[UInt8]: Int] = [:]
        for (r, t) in tokens.enumerated() { rankOf[t] = r }
        for (index, (a, b)) in merges.enumerated() {
            let r = 256 + index
            XCTAssertEqual(a + b, tokens[r])
            XCTAssertLessThan(rankOf[a]!, r)
            XCTAssertLessThan(rankOf[b]!, r)
        }
    }

    func testDemoTokenizerLoadsWithSmallVocabulary() throws {
        let (tiny, dir) = try write()
        let full = try Fixture.harmony()
        XCTAssertEqual(tiny.vocabularySize, 1088)
        for r in 0..<1024 { XCTAssertEqual(tiny.tokenBytes(Int32(r)), full.tokenBytes(Int32(r))) }
        XCTAssertNil(tiny.tokenBytes(1024))
        // o200k id 199998 + i -> 1024 + i
        XCTAssertEqual(tiny.specialTokenID("<|startoftext|>"), 1024)
        XCTAssertEqual(tiny.specialTokenID("<|endoftext|>"), 1025)
        XCTAssertEqual(tiny.specialTokenID("<|return|>"), 1028)
        XCTAssertEqual(tiny.specialTokenID("<|start|>"), 1032)
        XCTAssertEqual(tiny.specialTokenID("<|endofprompt|>"), 1044)
        XCTAssertEqual(tiny.specialTokenID("<|reserved_200061|>"), 1087)
        XCTAssertNil(tiny.specialTokenID("<|reserved_200062|>"))
        XCTAssertEqual(tiny.specialName(1044), "<|endofprompt|>")

        // Any text encodes into ids < K and decodes back; specials to their new ids.
        let corpus = try Fixture.decode([String].self, "tokenizer_corpus.json") + ["What is 17 + 25? 17 + 25 = 42."]
        for text in corpus {
            let ids = tiny.encode(text)
            XCTAssertTrue(ids.allSatisfy { $0 < 1024 }, text)
            XCTAssertEqual(try tiny.decode(ids), text)
            XCTAssertGreaterThanOrEqual(ids.count, full.encode(text).count)
        }
        XCTAssertEqual(tiny.encode("hi<|end|>", allowedSpecial: .all).last, 1033)  // 200007

        // The harmony template renders with the tokenizer's own special ids.
        let conversation = Conversation(messages: [Message(role: .user, content: "2 + 2?"), Message(role: .assistant, content: "4")])
        let rendered = try ChatTemplate.harmony(HarmonyOptions()).render(conversation, tokenizer: tiny)
        XCTAssertTrue(rendered.tokens.allSatisfy { $0 < 1088 }, "\(rendered.tokens)")
        XCTAssertEqual(rendered.tokens.first, 1032)
        XCTAssertEqual(rendered.tokens.last, 1028)

        // A standard HF file: merges in rank order, vocab as byte-level strings.
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("tokenizer.json"))) as! [String: Any]
        let model = json["model"] as! [String: Any]
        XCTAssertEqual((model["vocab"] as! [String: Any]).count, 1024)
        XCTAssertEqual((model["merges"] as! [[String]]).count, 1024 - 256)
        XCTAssertEqual((json["added_tokens"] as! [Any]).count, 64)
    }

    /// At K = 8000 (the committed subset fixture's size), encoding equals tiktoken's with
    /// `mergeable_ranks` cut at 8000 (subset_goldens.json), specials renumbered.
    func testMatchesTiktokenSubsetGoldens() throws {
        struct Goldens: Decodable {
            struct Case: Decodable { let text: String; let ids: [Int32] }
            let subset_size: Int
            let cases: [Case]
        }
        let goldens = try Fixture.decode(Goldens.self, "subset_goldens.json")
        let k = goldens.subset_size
        let (tiny, _) = try write(k: k, s: 1090)
        for c in goldens.cases {
            let want = c.ids.map { $0 >= 199998 ? Int32(k) + ($0 - 199998) : $0 }
            XCTAssertEqual(tiny.encode(c.text, allowedSpecial: .all), want, c.text.debugDescription)
        }
    }

    func testRejectsBadSizes() throws {
        let dir = try Fixture.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertThrowsError(try TinyTokenizer.write(to: dir.appendingPathComponent("t.json"),
                                                     tiktokenFile: try Fixture.url("o200k_base.tiktoken"), ordinaryTokens: 100))
        XCTAssertThrowsError(try TinyTokenizer.write(to: dir.appendingPathComponent("t.json"),
                                                     tiktokenFile: try Fixture.url("o200k_base.tiktoken"), specialTokens: 20))
    }
}
