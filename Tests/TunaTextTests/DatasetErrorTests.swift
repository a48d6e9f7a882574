import Foundation
import XCTest
@testable import TunaText

/// Every malformed input is an error naming the file, the line and the reason.
final class DatasetErrorTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = try Fixture.scratchDirectory()
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: dir)
    }

    /// Writes `contents` and asserts that reading it fails with exactly `expected`.
    func assertFails(_ contents: String, _ format: DatasetSpec.Format, fields: DatasetSpec.Fields = .init(),
                     line: Int, reason: String, file: StaticString = #filePath, testLine: UInt = #line) throws {
        let url = dir.appendingPathComponent("data.\(format == .csv ? "csv" : "jsonl")")
        try Data(contents.utf8).write(to: url)
        let spec = DatasetSpec(path: url.path, format: format, fields: fields)
        XCTAssertThrowsError(try readConversations(spec), file: file, line: testLine) { error in
            XCTAssertEqual(error as? TextError, .malformedRow(path: url.path, line: line, reason: reason), file: file, line: testLine)
        }
    }

    func testCSVErrors() throws {
        let f = DatasetSpec.Fields.problemSolution
        try assertFails("problem,solution\na,b\n\"open,x\n\nmore\n", .csv, fields: f, line: 3, reason: "unterminated quoted field")
        try assertFails("problem,solution\na,b\nc,d,e\n", .csv, fields: f, line: 3, reason: "expected 2 fields (as in the header), found 3")
        try assertFails("problem,solution\n\"a\"x,b\n", .csv, fields: f, line: 2, reason: "unexpected text after closing quote")
        try assertFails("problem,solution\na\"b,c\n", .csv, fields: f, line: 2, reason: "quote inside an unquoted field")
        try assertFails("problem,answer\na,b\n", .csv, fields: f, line: 2, reason: "missing field \"solution\"")
        try assertFails("problem,problem\na,b\n", .csv, fields: f, line: 1, reason: "duplicate column \"problem\" in header")
        try assertFails("", .csv, fields: f, line: 1, reason: "empty CSV file (no header row)")
        // The line of a record after a multi-line field is still exact.
        try assertFails("problem,solution\n\"x\ny\nz\",ok\nshort\n", .csv, fields: f, line: 5, reason: "expected 2 fields (as in the header), found 1")
    }

    func testCSVInvalidUTF8() throws {
        let url = dir.appendingPathComponent("bad.csv")
        try Data([0x70, 0x2C, 0x72, 0x0A, 0x61, 0x2C, 0xFF, 0x0A]).write(to: url)  // "p,r\na,\xFF\n"
        let spec = DatasetSpec(path: url.path, format: .csv, fields: .init(prompt: "p", response: "r"))
        XCTAssertThrowsError(try readConversations(spec)) { error in
            XCTAssertEqual(error as? TextError, .malformedRow(path: url.path, line: 2, reason: "invalid UTF-8"))
        }
    }

    func testJSONLErrors() throws {
        try assertFails("{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"a\", \"response\": }\n", .jsonl, line: 2,
                        reason: try jsonReason("{\"prompt\": \"a\", \"response\": }"))
        try assertFails("[1, 2]\n", .jsonl, line: 1, reason: "expected a JSON object, found a list")
        // 511 `[` made Foundation's JSON scanner trap (kill the process): a clear error instead.
        try assertFails("{\"prompt\": \"a\", \"response\": \"b\"}\n" + String(repeating: "[", count: 511) + "\n", .jsonl, line: 2,
                        reason: "invalid JSON (arrays and objects nested more than 100 deep)")
        try assertFails("{\"prompt\": \"a\"}\n", .jsonl, line: 1, reason: "missing field \"response\"")
        try assertFails("{\"prompt\": \"a\", \"response\": 3}\n", .jsonl, line: 1, reason: "field \"response\": expected a string, found a number")
        try assertFails("{\"prompt\": null, \"response\": \"b\"}\n", .jsonl, line: 1, reason: "field \"prompt\": expected a string, found null")
        try assertFails("{\"prompt\": true, \"response\": \"b\"}\n", .jsonl, line: 1, reason: "field \"prompt\": expected a string, found a boolean")
    }

    func testChatErrors() throws {
        try assertFails("{\"conversation\": []}\n", .chat, line: 1, reason: "missing field \"messages\"")
        try assertFails("{\"messages\": {}}\n", .chat, line: 1, reason: "field \"messages\": expected a list, found an object")
        try assertFails("{\"messages\": [\"hi\"]}\n", .chat, line: 1, reason: "messages[0]: expected an object, found a string")
        try assertFails("\n{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}\n", .chat, line: 2,
                        reason: "messages[0].role: \"tool\" is not one of system, developer, user, assistant")
        try assertFails("{\"messages\": [{\"role\": \"user\"}]}\n", .chat, line: 1, reason: "messages[0].content: expected a string, found nothing")
        try assertFails("{\"messages\": [{\"role\": \"assistant\", \"content\": \"x\", \"thinking\": 5}]}\n", .chat, line: 1,
                        reason: "messages[0].thinking: expected a string or null, found a number")
    }

    func testSpecAndFileErrors() throws {
        let missing = dir.appendingPathComponent("nope.jsonl").path
        XCTAssertThrowsError(try readConversations(DatasetSpec(path: missing, format: .jsonl))) { error in
            guard case .unreadableFile(let path, _)? = error as? TextError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, missing)
        }
        XCTAssertThrowsError(try readConversations(DatasetSpec(path: missing, format: .jsonl, valFraction: 1))) { error in
            XCTAssertEqual(error as? TextError, .invalidSpec(reason: "val_fraction must be in [0, 1), got 1.0"))
        }
        XCTAssertThrowsError(try readConversations(DatasetSpec(path: missing, format: .jsonl, promptTemplate: "about {tags"))) { error in
            XCTAssertEqual(error as? TextError, .invalidSpec(reason: "template \"about {tags\": unclosed '{'"))
        }
        XCTAssertThrowsError(try readConversations(DatasetSpec(path: missing, format: .chat, responseTemplate: "{x}")))
        XCTAssertThrowsError(try readConversations(DatasetSpec(path: missing, format: .jsonl, maxSeqLen: 0)))
    }

    func testTemplateErrorsAreReportedAtTheRow() throws {
        let url = dir.appendingPathComponent("chat.jsonl")
        try Data("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"developer\", \"content\": \"late\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n".utf8).write(to: url)
        let spec = DatasetSpec(path: url.path, format: .chat)
        XCTAssertThrowsError(try loadDataset(spec, tokenizer: Fixture.harmony(), template: .harmony(HarmonyOptions()))) { error in
            guard case .malformedRow(let path, let line, let reason)? = error as? TextError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, url.path)
            XCTAssertEqual(line, 2)
            XCTAssertTrue(reason.contains("developer message is only allowed first"), reason)
        }
    }

    func testFieldTemplateParsing() throws {
        XCTAssertEqual(try FieldTemplate("{{literal}} {a}-{b}").pieces,
                       [.literal("{literal} "), .column("a"), .literal("-"), .column("b")])
        XCTAssertThrowsError(try FieldTemplate("a } b"))
        XCTAssertThrowsError(try FieldTemplate("{}"))
    }

    /// The JSON error text comes from Foundation; compute it the same way rather than pinning
    /// a platform-specific message, but check that the row's line is what we report.
    private func jsonReason(_ line: String) throws -> String {
        let url = dir.appendingPathComponent("probe.jsonl")
        try Data(line.utf8).write(to: url)
        do {
            _ = try JSONLReader(path: url.path).parse(Array(line.utf8))
            XCTFail("probe line should not parse")
            return ""
        } catch {
            guard case .malformedRow(_, 1, let reason) = error else { throw error }
            XCTAssertTrue(reason.hasPrefix("invalid JSON ("), reason)
            return reason
        }
    }
}
