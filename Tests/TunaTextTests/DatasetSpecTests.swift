import Foundation
import XCTest
@testable import TunaText

/// `DatasetSpec` as the trainer receives it: the `dataset` section of a validated job.
final class DatasetSpecTests: XCTestCase {
    func testDecodesTheTrainerContractsDatasetSection() throws {
        // The dataset object of the example job in docs/trainer-contract.md.
        let json = #"{"fields":{"prompt":"problem","response":"solution"},"format":"csv","path":"data/numina_math_tir.csv","system":"You are a helpful math assistant. Reason step by step.","template":"im_start","val_fraction":0.05}"#
        let spec = try JSONDecoder().decode(DatasetSpec.self, from: Data(json.utf8))
        XCTAssertEqual(spec, DatasetSpec(path: "data/numina_math_tir.csv", format: .csv, template: .imStart,
                                         fields: .problemSolution, system: "You are a helpful math assistant. Reason step by step.",
                                         valFraction: 0.05, seed: 42))
        XCTAssertEqual(try spec.chatTemplate(), .imStart(system: "You are a helpful math assistant. Reason step by step."))
    }

    func testDefaultsAndHarmonyOptions() throws {
        let spec = try JSONDecoder().decode(DatasetSpec.self, from: Data(
            #"{"path": "d.jsonl", "reasoning_effort": "High", "date": "2025-06-28", "system": "Be brief.", "seed": 7, "max_seq_len": 2048}"#.utf8))
        XCTAssertEqual(spec.format, .jsonl)
        XCTAssertEqual(spec.template, .harmony)
        XCTAssertEqual(spec.valFraction, 0.1)
        XCTAssertEqual(spec.seed, 7)
        XCTAssertEqual(spec.maxSeqLen, 2048)
        XCTAssertEqual(try spec.chatTemplate(), .harmony(HarmonyOptions(reasoningEffort: .high, currentDate: "2025-06-28",
                                                                          developerInstructions: "Be brief.")))
        var bad = spec
        bad.reasoningEffort = "extreme"
        XCTAssertThrowsError(try bad.chatTemplate()) { error in
            XCTAssertEqual(error as? TextError, .invalidSpec(reason: "reasoning_effort must be low, medium or high, got \"extreme\""))
        }
        // No date in the spec: no date in the system message.
        let plain = try JSONDecoder().decode(DatasetSpec.self, from: Data(#"{"path": "d.jsonl"}"#.utf8))
        guard case let .harmony(options) = try plain.chatTemplate() else { return XCTFail("expected harmony") }
        XCTAssertNil(options.currentDate)
    }

    func testUnknownFieldRoleIsAnError() {
        let json = #"{"path": "d.csv", "fields": {"prompt": "q", "answer": "a"}}"#
        XCTAssertThrowsError(try JSONDecoder().decode(DatasetSpec.self, from: Data(json.utf8))) { error in
            XCTAssertTrue("\(error)".contains("unknown role \"answer\""), "\(error)")
        }
        XCTAssertThrowsError(try JSONDecoder().decode(DatasetSpec.self, from: Data(#"{"format": "csv"}"#.utf8)), "path is required")
        XCTAssertThrowsError(try JSONDecoder().decode(DatasetSpec.self, from: Data(#"{"path": "x", "template": "chatml"}"#.utf8)))
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
