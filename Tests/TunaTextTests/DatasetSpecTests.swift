import Foundation
import XCTest
@testable import TunaText

/// `DatasetSpec`: the loader's view of a job's `dataset` section.
final class DatasetSpecTests: XCTestCase {
    // How a job's `dataset` section becomes a DatasetSpec (defaults, roles, the contract's
    // example) is TrainJob's: Tests/TunaTrainTests/TrainJobTests.swift.

    func testHarmonyOptionsAndABadReasoningEffort() throws {
        let spec = DatasetSpec(path: "d.jsonl", system: "Be brief.", reasoningEffort: "High", date: "2025-06-28")
        XCTAssertEqual(try spec.chatTemplate(), .harmony(HarmonyOptions(reasoningEffort: .high, currentDate: "2025-06-28",
                                                                          developerInstructions: "Be brief.")))
        var bad = spec
        bad.reasoningEffort = "extreme"
        XCTAssertThrowsError(try bad.chatTemplate()) { error in
            XCTAssertEqual(error as? TextError, .invalidSpec(reason: "reasoning_effort must be low, medium or high, got \"extreme\""))
        }
        // No date in the spec: no date in the system message.
        guard case let .harmony(options) = try DatasetSpec(path: "d.jsonl").chatTemplate() else { return XCTFail("expected harmony") }
        XCTAssertNil(options.currentDate)
    }

    func testSeparateValidationFile() throws {
        let tokenizer = try Fixture.harmony()
        let spec = DatasetSpec(path: try Fixture.url("datasets/prompts.jsonl").path, format: .jsonl,
                               valPath: try Fixture.url("datasets/quotes.jsonl").path, valFraction: 0.5)
        XCTAssertThrowsError(try loadDataset(spec, tokenizer: tokenizer)) { error in
            // quotes.jsonl has no prompt/response columns: the error names the validation file.
            guard case .malformedRow(let path, 1, _)? = error as? TextError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, spec.valPath)
        }
        var ok = spec
        ok.valPath = spec.path
        let loaded = try loadDataset(ok, tokenizer: tokenizer)
        XCTAssertEqual(loaded.train, loaded.validation, "same file on both sides, no split applied")
        XCTAssertEqual(loaded.stats.trainExamples, 3)
        XCTAssertEqual(loaded.stats.validationExamples, 3)
        XCTAssertEqual(loaded.stats.rowsRead, 10)
        XCTAssertEqual(loaded.stats.emptyDropped, 4)
    }
}
