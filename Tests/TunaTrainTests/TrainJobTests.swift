import Foundation
import XCTest
import TunaCore
import TunaText
@testable import TunaTrain

/// A validated job spec as the native trainer reads it. (Moved from DatasetSpecTests when the
/// dataset section stopped being decoded with defaults of its own: the validator fills them in.)
final class TrainJobTests: XCTestCase {
    let root = URL(fileURLWithPath: "/data")

    func job(_ dataset: JSONValue, train: JSONValue = [:]) throws -> TrainJob {
        try TrainJob(spec: JobValidator.spec(["name": "t", "trainer": "native", "model": "m", "dataset": dataset, "train": train]), root: root)
    }

    func testTheTrainerContractsDatasetSection() throws {
        // The dataset object of the example job in docs/trainer-contract.md.
        let ds = try job(["fields": ["prompt": "problem", "response": "solution"], "format": "csv", "path": "data/numina_math_tir.csv",
                          "system": "You are a helpful math assistant. Reason step by step.", "template": "im_start",
                          "val_fraction": 0.05]).dataset
        XCTAssertEqual(ds, DatasetSpec(path: "/data/data/numina_math_tir.csv", format: .csv, template: .imStart,
                                       fields: .problemSolution, system: "You are a helpful math assistant. Reason step by step.",
                                       valFraction: 0.05, seed: 42, maxSeqLen: 1024))
        XCTAssertEqual(try ds.chatTemplate(), .imStart(system: "You are a helpful math assistant. Reason step by step."))
    }

    func testDefaultsComeFromTheValidator() throws {
        let ds = try job(["path": "/abs/d.jsonl", "reasoning_effort": "High", "date": "2025-06-28"],
                         train: ["seed": 7, "max_seq_len": 2048]).dataset
        XCTAssertEqual(ds.path, "/abs/d.jsonl")
        XCTAssertEqual(ds.format, .jsonl)
        XCTAssertEqual(ds.template, .harmony)
        XCTAssertEqual(ds.valFraction, 0.1)
        XCTAssertEqual(ds.seed, 7)
        XCTAssertEqual(ds.maxSeqLen, 2048)
        XCTAssertEqual(ds.fields, DatasetSpec.Fields())
    }

    /// Every role the spec accepts reaches the loader (a role TrainJob forgot would silently read
    /// the default column).
    func testEveryRoleReachesTheLoader() throws {
        for role in JobSpec.Dataset.roles {
            let f = try job(["path": "d.csv", "fields": [role: .string("col_\(role)")]]).dataset.fields
            let got = ["prompt": f.prompt, "response": f.response, "system": f.system, "thinking": f.thinking, "messages": f.messages]
            XCTAssertEqual(got[role] ?? nil, "col_\(role)", role)
        }
    }

    func testBadDatasetSectionsAreRefusedAtValidation() {
        func problems(_ ds: JSONValue) -> [String] {
            JobValidator.validate(["name": "t", "trainer": "native", "model": "m", "dataset": ds]).problems
        }
        XCTAssertEqual(problems(["path": "d.csv", "fields": ["prompt": "q", "answer": "a"]]),
                       [#"dataset.fields: unknown role "answer" (expected one of prompt, response, system, thinking, messages)"#])
        XCTAssertEqual(problems(["format": "csv"]), ["dataset.path: required"])
        XCTAssertEqual(problems(["path": "x", "template": "chatml"]), [#"dataset.template: "chatml" is not one of harmony, im_start"#])
    }
}
