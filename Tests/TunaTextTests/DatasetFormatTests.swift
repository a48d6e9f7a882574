import Foundation
import XCTest
@testable import TunaText

/// Each data set format, read into conversations and rendered.
final class DatasetFormatTests: XCTestCase {
    func spec(_ file: String, _ format: DatasetSpec.Format, fields: DatasetSpec.Fields = .init(),
              prompt: String? = nil, response: String? = nil) throws -> DatasetSpec {
        DatasetSpec(path: try Fixture.url("datasets/\(file)").path, format: format, fields: fields,
                    promptTemplate: prompt, responseTemplate: response)
    }

    func testNuminaCSVWithQuotesAndMultilineFields() throws {
        let (rows, stats) = try readConversations(spec("numina.csv", .csv, fields: .problemSolution))
        XCTAssertEqual(stats.rowsRead, 5)
        XCTAssertEqual(stats.emptyDropped, 2, "the all-empty record and the blank solution")
        XCTAssertEqual(rows.map(\.line), [2, 11, 13])
        XCTAssertEqual(rows[0].conversation, Conversation(prompt: "What is $1+1$?",
            response: "We add:\n\n```python\nprint(1+1)\n```\n```output\n2\n```\nSo the answer is $\\boxed{2}$."))
        XCTAssertEqual(rows[1].conversation.messages[0].content, "Quote \"this\", then answer: 2*3?")
        XCTAssertEqual(rows[1].conversation.messages[1].content, "It is 6, clearly.")
        XCTAssertEqual(rows[2].conversation.messages[0].content, "Multi\nline\nproblem")
        XCTAssertEqual(rows[2].conversation.messages[1].content, "Solution with a trailing comma,")
    }

    func testCRLFCSV() throws {
        let (rows, stats) = try readConversations(spec("crlf.csv", .csv, fields: .problemSolution))
        XCTAssertEqual(stats.rowsRead, 2)
        XCTAssertEqual(rows.map(\.conversation), [Conversation(prompt: "A", response: "B"), Conversation(prompt: "C\r\nD", response: "E")])
        XCTAssertEqual(rows.map(\.line), [2, 3])
    }

    func testPromptResponseJSONL() throws {
        let (rows, stats) = try readConversations(spec("prompts.jsonl", .jsonl))
        XCTAssertEqual(stats.rowsRead, 5)
        XCTAssertEqual(stats.emptyDropped, 2, "the blank line and the blank prompt")
        XCTAssertEqual(rows.map(\.line), [1, 2, 5])
        XCTAssertEqual(rows[2].conversation, Conversation(prompt: "日本語で挨拶して", response: "こんにちは！"))
    }

    func testTemplatesOverOtherColumns() throws {
        let s = try spec("quotes.jsonl", .jsonl, prompt: "Give me a quote about {tags}", response: "{quote} - {author} ({likes} likes)")
        XCTAssertThrowsError(try readConversations(s)) { error in
            XCTAssertEqual(error as? TextError, .malformedRow(path: s.path, line: 1, reason: "missing field \"likes\""))
        }
        let ok = try spec("quotes.jsonl", .jsonl, prompt: "Give me a quote about {tags}", response: "{quote} - {author}")
        let (rows, _) = try readConversations(ok)
        XCTAssertEqual(rows[0].conversation, Conversation(prompt: "Give me a quote about be-yourself, inspirational",
                                                          response: "Be yourself; everyone else is already taken. - Oscar Wilde"))
        XCTAssertEqual(rows[1].conversation.messages[0].content, "Give me a quote about books, humor")
    }

    func testTemplateValueTypes() throws {
        let dir = try Fixture.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("typed.jsonl")
        try Data(#"{"n": 3, "b": true, "d": 2.5, "tags": ["a", 1, false], "s": "x"}"#.utf8).write(to: file)
        let s = DatasetSpec(path: file.path, format: .jsonl, promptTemplate: "{n}|{b}|{d}", responseTemplate: "{tags}; {s}")
        let (rows, _) = try readConversations(s)
        XCTAssertEqual(rows.first?.conversation, Conversation(prompt: "3|true|2.5", response: "a, 1, false; x"))
        // Nested lists and objects have no obvious text form: an error, not a guess.
        try Data(#"{"n": {"k": 1}, "s": "x"}"#.utf8).write(to: file)
        XCTAssertThrowsError(try readConversations(s)) { error in
            XCTAssertEqual(error as? TextError, .malformedRow(path: file.path, line: 1,
                reason: "field \"n\": expected a string, number, boolean or list of those, found an object"))
        }
    }

    func testChatMessagesWithThinking() throws {
        let (rows, stats) = try readConversations(spec("chat.jsonl", .chat))
        XCTAssertEqual(stats.rowsRead, 4)
        XCTAssertEqual(stats.emptyDropped, 2, "no assistant answer / no messages")
        XCTAssertEqual(rows.count, 2)
        let first = rows[0].conversation.messages
        XCTAssertEqual(first.map(\.role), [.system, .user, .assistant])
        XCTAssertNil(first[0].thinking)
        XCTAssertEqual(first[2].thinking, "D'accord, l'utilisateur demande la capitale de l'Australie. C'est Canberra.")

        // Rendered with harmony: the system message becomes developer instructions, and the
        // thinking is kept as the analysis message (TunaText's default).
        let tokenizer = try Fixture.harmony()
        let r = try ChatTemplate.harmony(HarmonyOptions(reasoningEffort: .medium, currentDate: "2025-06-28"))
            .render(rows[0].conversation, tokenizer: tokenizer)
        let text = try tokenizer.decode(r.tokens)
        XCTAssertTrue(text.contains("<|start|>developer<|message|># Instructions\n\nreasoning language: French\n\nYou are a helpful assistant.<|end|>"))
        XCTAssertTrue(text.hasSuffix("<|start|>assistant<|channel|>analysis<|message|>D'accord, l'utilisateur demande la capitale de l'Australie. C'est Canberra.<|end|>"
            + "<|start|>assistant<|channel|>final<|message|>The capital of Australia is Canberra.<|return|>"))
    }

    /// Multilingual-Thinking rows carry both layouts; the flat columns mapped through
    /// `Fields` and the `messages` list must give the same conversation.
    func testMultilingualThinkingFlatColumnsEqualMessagesForm() throws {
        let flat = try readConversations(spec("thinking_flat.jsonl", .jsonl,
            fields: .init(prompt: "user", response: "final", system: "developer", thinking: "analysis")))
        let chat = try readConversations(spec("thinking_flat.jsonl", .chat))
        XCTAssertEqual(flat.rows.count, 1)
        XCTAssertEqual(flat.rows.map(\.conversation), chat.rows.map(\.conversation))
        XCTAssertEqual(chat.rows[0].conversation.messages.last?.thinking, "Okay, Spinnen haben acht Beine.")
    }

    func testSystemAndThinkingColumns() throws {
        let dir = try Fixture.scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("rows.csv")
        try Data("q,a,sys,why\nHi,Hello,Be nice,greeting\nYo,Hey,,\n".utf8).write(to: file)
        let s = DatasetSpec(path: file.path, format: .csv, fields: .init(prompt: "q", response: "a", system: "sys", thinking: "why"))
        let (rows, _) = try readConversations(s)
        XCTAssertEqual(rows[0].conversation.messages, [
            Message(role: .system, content: "Be nice"), Message(role: .user, content: "Hi"),
            Message(role: .assistant, content: "Hello", thinking: "greeting"),
        ])
        XCTAssertEqual(rows[1].conversation.messages, [
            Message(role: .user, content: "Yo"), Message(role: .assistant, content: "Hey", thinking: ""),
        ])
    }
}
