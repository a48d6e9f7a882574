import Foundation
import XCTest
@testable import TunaText

final class ImStartTemplateTests: XCTestCase {
    struct Case: Decodable {
        let name: String
        let system: String?
        let problem: String
        let solution: String
    }
    struct Goldens: Decodable {
        struct Golden: Decodable {
            let name: String
            let prompt_ids: [Int32]
            let answer_ids: [Int32]
        }
        let cases: [Golden]
    }

    func testMatchesGoldensAndMasksAnswerOnly() throws {
        let tokenizer = try Fixture.harmony()
        let cases = try Fixture.decode([Case].self, "imstart_cases.json")
        let goldens = try Fixture.decode(Goldens.self, "imstart_goldens.json")
        XCTAssertEqual(cases.map(\.name), goldens.cases.map(\.name))
        for (c, golden) in zip(cases, goldens.cases) {
            let r = try ChatTemplate.imStart(system: c.system)
                .render(Conversation(prompt: c.problem, response: c.solution), tokenizer: tokenizer)
            XCTAssertEqual(r.tokens, golden.prompt_ids + golden.answer_ids, c.name)
            XCTAssertEqual(r.lossMask, Array(repeating: false, count: golden.prompt_ids.count)
                + Array(repeating: true, count: golden.answer_ids.count), c.name)
            // Markers are plain text: no special ids anywhere.
            XCTAssertFalse(r.tokens.contains(where: tokenizer.isSpecial), c.name)
        }
    }

    func testTextLayoutAndConversationSystemWins() throws {
        let tokenizer = try Fixture.harmony()
        let conversation = Conversation(messages: [
            Message(role: .system, content: "S"), Message(role: .user, content: "Q1"), Message(role: .assistant, content: "A1"),
            Message(role: .user, content: "Q2"), Message(role: .assistant, content: "A2"),
        ])
        let r = try ChatTemplate.imStart(system: "ignored").render(conversation, tokenizer: tokenizer)
        XCTAssertEqual(try tokenizer.decode(r.tokens),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>"
            + "\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\nA2<|im_end|>")
        let trained = zip(r.tokens, r.lossMask).filter(\.1).map(\.0)
        XCTAssertEqual(try tokenizer.decode(trained), "A1<|im_end|>A2<|im_end|>")
    }

    func testThinkingIsRejected() throws {
        let tokenizer = try Fixture.harmony()
        let c = Conversation(messages: [Message(role: .user, content: "Q"), Message(role: .assistant, content: "A", thinking: "T")])
        XCTAssertThrowsError(try ChatTemplate.imStart(system: nil).render(c, tokenizer: tokenizer))
    }
}
