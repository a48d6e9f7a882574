import Foundation
import XCTest
@testable import TunaText

/// The HF `tokenizer.json` loader must build the same ranks table as the `.tiktoken` loader.
final class TokenizerJSONTests: XCTestCase {
    struct SubsetGoldens: Decodable {
        struct Case: Decodable {
            let text: String
            let ids: [Int32]
        }
        let subset_size: Int
        let cases: [Case]
    }

    func testSubsetJSONMatchesTiktokenRanksAndIDs() throws {
        let json = try Tokenizer(tokenizerJSON: Fixture.url("subset_tokenizer.json"))
        let full = try Fixture.harmony()
        let goldens = try Fixture.decode(SubsetGoldens.self, "subset_goldens.json")

        // Same bytes for every rank the subset has, and nothing beyond it.
        XCTAssertEqual(json.ranks.count, goldens.subset_size)
        for rank in 0..<goldens.subset_size {
            XCTAssertEqual(json.tokenBytes(Int32(rank)), full.tokenBytes(Int32(rank)), "rank \(rank)")
        }
        XCTAssertNil(json.tokenBytes(Int32(goldens.subset_size)))

        // Specials come from added_tokens.
        XCTAssertEqual(json.specialTokenID("<|start|>"), 200006)
        XCTAssertEqual(json.specialTokenID("<|reserved_201087|>"), 201087)
        XCTAssertEqual(json.specialTokenID("<|endofprompt|>"), 200018)

        // Encoding with the subset vocabulary equals tiktoken with the same subset.
        for c in goldens.cases {
            XCTAssertEqual(json.encode(c.text, allowedSpecial: .all), c.ids, c.text.debugDescription)
        }
    }

    /// A full-size `tokenizer.json` written from the `.tiktoken` ranks loads to identical ids.
    func testFullVocabularyRoundTripThroughJSON() throws {
        let full = try Fixture.harmony()
        var vocab: [String: Int] = [:]
        for rank in 0..<full.ranks.rankLimit {
            guard let bytes = full.tokenBytes(Int32(rank)) else { continue }
            vocab[ByteLevelDecoder.encode(bytes)] = rank
        }
        XCTAssertEqual(vocab.count, 199_998)
        let added = HarmonySpecialTokens.all
            .filter { $0.value != 200018 || $0.key == "<|endofprompt|>" }
            .map { ["id": Int($0.value), "content": $0.key, "special": true] as [String: Any] }
        let object: [String: Any] = ["model": ["type": "BPE", "vocab": vocab, "merges": [String]()], "added_tokens": added]
        let dir = try Fixture.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("tokenizer.json")
        try JSONSerialization.data(withJSONObject: object).write(to: url)

        let fromJSON = try Tokenizer.load(fromCheckpoint: dir)
        let corpus = try Fixture.decode([String].self, "tokenizer_corpus.json")
        for text in corpus {
            XCTAssertEqual(fromJSON.encode(text, allowedSpecial: .all), full.encode(text, allowedSpecial: .all))
        }
        XCTAssertEqual(fromJSON.vocabularySize, full.vocabularySize)
    }

    func testCheckpointLoaderFallsBackToTiktokenAndReportsMissing() throws {
        let dir = try Fixture.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertThrowsError(try Tokenizer.load(fromCheckpoint: dir)) { error in
            guard case .tokenizerNotFound(_, let looked)? = error as? TextError else {
                return XCTFail("unexpected error \(error)")
            }
            XCTAssertEqual(looked, ["tokenizer.json", "o200k_base.tiktoken"])
        }
        try FileManager.default.copyItem(at: Fixture.url("o200k_base.tiktoken"),
                                         to: dir.appendingPathComponent("o200k_base.tiktoken"))
        let tokenizer = try Tokenizer.load(fromCheckpoint: dir)
        XCTAssertEqual(tokenizer.encode("Hello, world!"), try Fixture.harmony().encode("Hello, world!"))
        XCTAssertEqual(tokenizer.specialTokenID("<|return|>"), 200002)
    }

    func testMalformedFilesNameFileAndLine() throws {
        let dir = try Fixture.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bad = dir.appendingPathComponent("bad.tiktoken")
        try Data("IQ== 0\nnot-base64! 1\n".utf8).write(to: bad)
        XCTAssertThrowsError(try Tokenizer(tiktokenFile: bad)) { error in
            XCTAssertEqual(error as? TextError, .tokenizerFile(path: bad.path, line: 2, reason: "invalid base64 token"))
        }
        try Data("IQ== 0\nIg==\n".utf8).write(to: bad)
        XCTAssertThrowsError(try Tokenizer(tiktokenFile: bad)) { error in
            XCTAssertEqual(error as? TextError, .tokenizerFile(path: bad.path, line: 2, reason: "expected '<base64 token> <rank>'"))
        }
        try Data("IQ== 0\nIg== x\n".utf8).write(to: bad)
        XCTAssertThrowsError(try Tokenizer(tiktokenFile: bad)) { error in
            XCTAssertEqual(error as? TextError, .tokenizerFile(path: bad.path, line: 2, reason: "invalid rank"))
        }
        // Valid lines but not all 256 bytes: unusable as a byte-level BPE.
        try Data("IQ== 0\nIg== 1\n".utf8).write(to: bad)
        XCTAssertThrowsError(try Tokenizer(tiktokenFile: bad)) { error in
            XCTAssertEqual(error as? TextError, .tokenizerFile(path: bad.path, line: nil, reason: "vocabulary has no token for byte 0x0"))
        }
        // Duplicate bytes.
        try Data("IQ== 0\nIQ== 1\n".utf8).write(to: bad)
        XCTAssertThrowsError(try Tokenizer(tiktokenFile: bad)) { error in
            XCTAssertEqual(error as? TextError, .tokenizerFile(path: bad.path, line: nil, reason: "rank 1 has the same bytes as rank 0"))
        }

        let json = dir.appendingPathComponent("tokenizer.json")
        try Data(#"{"model": {"type": "Unigram", "vocab": {}}}"#.utf8).write(to: json)
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: json)) { error in
            XCTAssertEqual(error as? TextError, .tokenizerFile(path: json.path, line: nil, reason: "model.type is \"Unigram\"; only BPE is supported"))
        }
        try Data(#"{"model": {"type": "BPE", "vocab": {"a": "zero"}}}"#.utf8).write(to: json)
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: json)) { error in
            XCTAssertEqual(error as? TextError, .tokenizerFile(path: json.path, line: nil, reason: "vocab entry \"a\" has a non-integer id"))
        }
        try Data("{not json".utf8).write(to: json)
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: json)) { error in
            guard case .tokenizerFile(let path, _, let reason)? = error as? TextError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, json.path)
            XCTAssertTrue(reason.hasPrefix("cannot read or parse JSON"), reason)
        }
    }

    func testBase64Decoder() {
        XCTAssertEqual(Base64.decode(ArraySlice("IQ==".utf8)), [0x21])
        XCTAssertEqual(Base64.decode(ArraySlice("IGNvY29z".utf8)), Array(" cocos".utf8))
        XCTAssertEqual(Base64.decode(ArraySlice("SGk=".utf8)), Array("Hi".utf8))
        XCTAssertNil(Base64.decode(ArraySlice("SGk".utf8)))
        XCTAssertNil(Base64.decode(ArraySlice("S=k=".utf8)))
        XCTAssertNil(Base64.decode(ArraySlice("SG*=".utf8)))
    }
}
