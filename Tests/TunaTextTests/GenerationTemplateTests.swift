import Foundation
import XCTest
@testable import TunaText

/// Generation prompts, stop tokens and reply parsing against openai_harmony
/// (`render_conversation_for_completion`, `stop_tokens_for_assistant_actions`,
/// `parse_messages_from_completion_tokens`; goldens from reference/text_goldens.py).
final class GenerationTemplateTests: XCTestCase {
    struct Goldens: Decodable {
        struct Prompt: Decodable { let name: String, ids: [Int32], text: String }
        struct Reply: Decodable {
            struct Parsed: Decodable, Equatable {
                let role: String, channel: String?, recipient: String?, content_type: String?, text: String
            }
            let name: String, ids: [Int32], messages: [Parsed]?, error: String?
        }
        let prompts: [Prompt]
        let replies: [Reply]
        let stop_tokens_for_assistant_actions: [Int32]
    }

    func testPromptsMatchOpenAIHarmonysCompletionRender() throws {
        let tokenizer = try Fixture.harmony()
        let cases = try Fixture.decode([HarmonyTemplateTests.Case].self, "harmony_cases.json")
        let goldens = try Fixture.decode(Goldens.self, "completion_goldens.json")
        XCTAssertEqual(cases.map(\.name), goldens.prompts.map(\.name), "goldens are stale; rerun reference.text_goldens")
        for (c, golden) in zip(cases, goldens.prompts) {
            var messages = c.conversation.messages
            while messages.last?.role == .assistant { messages.removeLast() }
            let ids = try ChatTemplate.harmony(c.options).renderPrompt(Conversation(messages: messages), tokenizer: tokenizer)
            XCTAssertEqual(ids, golden.ids, c.name)
            XCTAssertEqual(try tokenizer.decode(ids), golden.text, c.name)
        }
        // a multi-turn prompt loses the earlier turn's analysis (harmony's completion default)
        let multi = try XCTUnwrap(goldens.prompts.first { $0.name == "multi_turn_keep_analysis" })
        XCTAssertFalse(multi.text.contains("<|channel|>analysis"))
    }

    func testStopTokensAreHarmonysAssistantActions() throws {
        let tokenizer = try Fixture.harmony()
        let goldens = try Fixture.decode(Goldens.self, "completion_goldens.json")
        XCTAssertEqual(ChatTemplate.harmony(HarmonyOptions()).stopTokens(tokenizer: tokenizer).sorted(),
                       goldens.stop_tokens_for_assistant_actions)
    }

    func testRepliesParseAsOpenAIHarmonyParsesThem() throws {
        let tokenizer = try Fixture.harmony()
        let goldens = try Fixture.decode(Goldens.self, "completion_goldens.json")
        XCTAssertGreaterThanOrEqual(goldens.replies.count, 10)
        XCTAssertGreaterThanOrEqual(goldens.replies.filter { $0.error != nil }.count, 3)
        let template = ChatTemplate.harmony(HarmonyOptions())
        for reply in goldens.replies {
            if let want = reply.messages {
                let got = try template.parseReply(reply.ids, tokenizer: tokenizer).map {
                    Goldens.Reply.Parsed(role: $0.role, channel: $0.channel, recipient: $0.recipient, content_type: $0.contentType,
                                         text: $0.text)
                }
                XCTAssertEqual(got, want, reply.name)
            } else {
                XCTAssertThrowsError(try template.parseReply(reply.ids, tokenizer: tokenizer), reply.name) { error in
                    // the first words of harmony's own message
                    let words = reply.error!.split(separator: " ").prefix(2).joined(separator: " ")
                    XCTAssertTrue("\(error)".contains(words), "\(reply.name): \(error) vs \(reply.error!)")
                }
            }
        }
    }

    /// The im_start prompt is the training render's prompt side token for token, and a reply
    /// ends at its plain-text `<|im_end|>`.
    func testImStartPromptAndReply() throws {
        let tokenizer = try Fixture.harmony()
        let cases = try Fixture.decode([ImStartTemplateTests.Case].self, "imstart_cases.json")
        let goldens = try Fixture.decode(ImStartTemplateTests.Goldens.self, "imstart_goldens.json")
        for (c, golden) in zip(cases, goldens.cases) {
            let template = ChatTemplate.imStart(system: c.system)
            let ids = try template.renderPrompt(Conversation(messages: [Message(role: .user, content: c.problem)]), tokenizer: tokenizer)
            XCTAssertEqual(ids, golden.prompt_ids, c.name)
            XCTAssertTrue(template.replyIsComplete(golden.answer_ids, tokenizer: tokenizer), c.name)
            XCTAssertFalse(template.replyIsComplete(Array(golden.answer_ids.dropLast(2)), tokenizer: tokenizer), c.name)
            XCTAssertEqual(try template.parseReply(golden.answer_ids, tokenizer: tokenizer).map(\.text), [c.solution], c.name)
        }
    }

    func testAPromptEndingWithTheAssistantIsRefused() throws {
        let tokenizer = try Fixture.harmony()
        let done = Conversation(prompt: "Hi", response: "Hello")
        for template in [ChatTemplate.harmony(HarmonyOptions()), .imStart(system: nil)] {
            XCTAssertThrowsError(try template.renderPrompt(done, tokenizer: tokenizer)) {
                XCTAssertTrue("\($0)".contains("must not end with an assistant message"), "\($0)")
            }
        }
    }
}
