import Foundation
import XCTest
@testable import TunaText

/// Harmony rendering against openai_harmony's `render_conversation_for_training`.
final class HarmonyTemplateTests: XCTestCase {
    struct Case: Decodable {
        let name: String
        let options: HarmonyOptions
        let conversation: Conversation
    }
    struct Goldens: Decodable {
        struct Golden: Decodable {
            let name: String
            let ids: [Int32]
            let text: String
        }
        let cases: [Golden]
    }

    func testMatchesOpenAIHarmony() throws {
        let tokenizer = try Fixture.harmony()
        let cases = try Fixture.decode([Case].self, "harmony_cases.json")
        let goldens = try Fixture.decode(Goldens.self, "harmony_goldens.json")
        XCTAssertEqual(cases.map(\.name), goldens.cases.map(\.name), "goldens are stale; rerun make_goldens.py")
        XCTAssertGreaterThanOrEqual(cases.count, 10)
        for (c, golden) in zip(cases, goldens.cases) {
            let rendered = try ChatTemplate.harmony(c.options).render(c.conversation, tokenizer: tokenizer)
            XCTAssertEqual(rendered.tokens, golden.ids, c.name)
            XCTAssertEqual(try tokenizer.decode(rendered.tokens), golden.text, c.name)
            XCTAssertEqual(rendered.lossMask.count, rendered.tokens.count, c.name)
        }
    }

    /// The mask covers exactly what the model samples after `<|start|>assistant`.
    func testLossMaskCoversAssistantTokensOnly() throws {
        let tokenizer = try Fixture.harmony()
        let conversation = Conversation(messages: [
            Message(role: .developer, content: "Be brief."),
            Message(role: .user, content: "Hi"),
            Message(role: .assistant, content: "Hello!", thinking: "Greet back."),
            Message(role: .user, content: "Bye"),
            Message(role: .assistant, content: "Goodbye."),
        ])
        let r = try ChatTemplate.harmony(HarmonyOptions(currentDate: "2025-06-28")).render(conversation, tokenizer: tokenizer)
        let trained = try tokenizer.decode(zip(r.tokens, r.lossMask).filter(\.1).map(\.0))
        XCTAssertEqual(trained,
            "<|channel|>analysis<|message|>Greet back.<|end|>"
            + "<|start|>assistant<|channel|>final<|message|>Hello!<|end|>"
            + "<|channel|>final<|message|>Goodbye.<|return|>")
        // The untrained part is the prompt side, including each turn's `<|start|>assistant`.
        let untrained = try tokenizer.decode(zip(r.tokens, r.lossMask).filter { !$0.1 }.map(\.0))
        XCTAssertTrue(untrained.hasPrefix("<|start|>system<|message|>"))
        XCTAssertTrue(untrained.hasSuffix("<|start|>user<|message|>Bye<|end|><|start|>assistant"))
        XCTAssertEqual(r.tokens.last, HarmonySpecialTokens.returnToken)
        XCTAssertEqual(r.lossMask.last, true)
    }

    func testSystemTextSections() {
        XCTAssertEqual(HarmonyOptions(reasoningEffort: .low, currentDate: "2025-01-02").systemText,
            "You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\nCurrent date: 2025-01-02"
            + "\n\nReasoning: low\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.")
        XCTAssertEqual(HarmonyOptions(reasoningEffort: nil, modelIdentity: nil, knowledgeCutoff: nil).systemText,
            "# Valid channels: analysis, commentary, final. Channel must be included for every message.")
    }

    func testOptionsDecodeDistinguishesAbsentFromNull() throws {
        let absent = try JSONDecoder().decode(HarmonyOptions.self, from: Data("{}".utf8))
        XCTAssertEqual(absent, HarmonyOptions())
        XCTAssertNil(absent.currentDate, "the date is never taken from the clock")
        let nulls = try JSONDecoder().decode(HarmonyOptions.self, from: Data(#"{"knowledge_cutoff": null, "reasoning_effort": null}"#.utf8))
        XCTAssertNil(nulls.knowledgeCutoff)
        XCTAssertNil(nulls.reasoningEffort)
        XCTAssertEqual(nulls.modelIdentity, HarmonyOptions.defaultModelIdentity)
        let full = HarmonyOptions(reasoningEffort: .high, modelIdentity: nil, currentDate: "2025-06-28", autoDropAnalysis: true)
        XCTAssertEqual(try JSONDecoder().decode(HarmonyOptions.self, from: JSONEncoder().encode(full)), full)
    }

    func testMisplacedInstructionsAreRejected() throws {
        let tokenizer = try Fixture.harmony()
        let late = Conversation(messages: [
            Message(role: .user, content: "Hi"), Message(role: .system, content: "late"), Message(role: .assistant, content: "x"),
        ])
        XCTAssertThrowsError(try ChatTemplate.harmony(HarmonyOptions()).render(late, tokenizer: tokenizer)) { error in
            guard case .invalidConversation(let reason)? = error as? TextError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.hasPrefix("message 2:"), reason)
        }
        let thinkingUser = Conversation(messages: [Message(role: .user, content: "Hi", thinking: "hmm")])
        XCTAssertThrowsError(try ChatTemplate.harmony(HarmonyOptions()).render(thinkingUser, tokenizer: tokenizer))
    }
}
