import Foundation
import XCTest
@testable import TunaCore

/// The typed job spec: one place for every default (`JobSpec`), the validated form strict, and
/// contract/ exactly what the Swift types say.
final class JobSpecTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// contract/ is what `tuna contract --write` writes now: a changed default or a new field
    /// fails here until the folder (which the Python trainer reads) is rewritten.
    func testCommittedContractIsWhatTheTypesSay() throws {
        let stale = try Contract.stale(in: Self.repo.appendingPathComponent("contract"))
        XCTAssertEqual(stale, [], "contract/ is out of date: run `swift run tuna contract --write`")
    }

    /// A spec with nothing but the required fields validates to the golden spec, in which every
    /// default is spelled out; the validated form validates to itself and decodes to the same spec.
    func testMinimalSpecsGiveTheGoldenSpecsAndTheValidatedFormIsAFixedPoint() throws {
        for c in Contract.jobCases {
            let golden = try goldenCase(c.name)
            XCTAssertEqual(golden["input"], try JSONValue.parse(c.input.canonicalJSON), c.name)  // read back as the file is
            let validated = try XCTUnwrap(golden["validated"])
            let spec = try JobValidator.spec(c.input)
            // (The golden text is compared byte for byte by the test above; here the typed
            // values, since parsing reads `16.0` back as the integer 16.)
            XCTAssertEqual(try JobValidator.spec(validated), spec, "\(c.name): validating the validated form changes it")
            XCTAssertEqual(try JobSpec(json: validated), spec, "\(c.name): the strict reader disagrees with the validator")
        }
    }

    /// The strict reader takes no defaults: dropping any field the validator always fills in is
    /// an error that names it.
    func testTheValidatedFormIsReadStrictly() throws {
        for name in ["lora-torch", "prune-native", "command"] {
            let validated = try XCTUnwrap(try goldenCase(name)["validated"])
            for path in leafPaths(validated) where !(name == "command" && path == ["learning_rate"]) {
                let without = removing(path, from: validated)
                XCTAssertThrowsError(try JobSpec(json: without), "\(name): \(path) missing was accepted") { error in
                    XCTAssert("\(error)".contains(path.joined(separator: ".") + ": missing"), "\(name): \(error)")
                }
            }
        }
        var wrong = try XCTUnwrap(try goldenCase("lora-native")["validated"]?.objectValue)
        wrong["train"] = wrong["train"]!.setting(["seed"][...], to: "forty-two")
        XCTAssertThrowsError(try JobSpec(json: .object(wrong))) { XCTAssert("\($0)".contains("train.seed"), "\($0)") }
    }

    /// The command trainer's extra fields go through as written, and back out on encoding.
    func testCommandJobsKeepTheirOwnFields() throws {
        let input: JSONValue = ["name": "c", "trainer": "command", "command": ["run"], "task": "anything", "lr": 0.5,
                                "nested": ["a": [1, 2]]]
        let spec = try JobValidator.spec(input)
        XCTAssertEqual(spec.extra, ["task": "anything", "lr": 0.5, "nested": ["a": [1, 2]]])
        XCTAssertNil(spec.task)
        XCTAssertEqual(try JobSpec(json: spec.json), spec)
    }

    /// Integers and floating-point numbers stay apart in the stored form (their canonical JSON,
    /// and so the job's hash, differ), as they did before the spec had a type.
    func testNumbersKeepTheirKind() throws {
        let spec = try JobValidator.spec(["name": "n", "trainer": "native", "model": "m", "dataset": ["path": "d"],
                                          "lora": ["rank": 4, "alpha": 8]])
        XCTAssertEqual(spec.json["lora"]?["rank"], .int(4))
        XCTAssertEqual(spec.json["lora"]?["alpha"], .number(8))
        XCTAssert(spec.json.canonicalJSON.contains(#""alpha":8.0"#), spec.json.canonicalJSON)
    }

    /// The bounds that used to differ between the validator and the trainer are one rule now.
    func testMaxSeqLenOfOneIsRefusedAtSubmission() {
        let r = JobValidator.validate(["name": "n", "trainer": "native", "model": "m", "dataset": ["path": "d"],
                                       "train": ["max_seq_len": 1]])
        XCTAssertNil(r.spec)
        XCTAssertEqual(r.problems, ["train.max_seq_len: 1 is not an integer >= 2"])
    }

    /// `eval`: a LoRA job's section; everything wrong with it named at submission.
    func testTaskEvaluationSectionIsCheckedAtSubmission() throws {
        let base: [String: JSONValue] = ["name": "e", "trainer": "native", "model": "m", "dataset": ["path": "d"]]
        func problems(_ extra: [String: JSONValue]) -> [String] { JobValidator.validate(.object(base.merging(extra) { $1 })).problems }
        let spec = try JobValidator.spec(.object(base.merging(["eval": [:]]) { $1 }))
        XCTAssertEqual(spec.eval, JobSpec.Eval(), "an empty eval section takes every default")
        XCTAssertEqual(spec.eval?.answer, AnswerRule(extract: .boxed, compare: .math))
        XCTAssertNil(try JobValidator.spec(.object(base)).eval, "no section, no task evaluation")
        XCTAssertEqual(problems(["trainer": "torch", "eval": [:]]), [], "both trainers run it")
        XCTAssertEqual(problems(["trainer": "command", "command": ["x"], "eval": [:]]), [], "a command job's own field")
        XCTAssertEqual(problems(["task": "prune", "prune": ["keep": 2], "eval": [:]]), ["eval: a prune job takes no eval section (use prune)"])
        XCTAssertEqual(problems(["eval": ["generate": ["count": 0, "top_p": 0, "reasoning_effort": "max", "tokens": 5]]]).sorted(), [
            "eval.generate.count: 0 is not a positive integer",
            "eval.generate.reasoning_effort: \"max\" is not one of low, medium, high",
            "eval.generate.tokens: unknown field (expected one of batch_size, count, max_new_tokens, reasoning_effort, seed, temperature, top_k, top_p)",
            "eval.generate.top_p: 0 is not a number > 0 and <= 1",
        ])
        XCTAssertEqual(problems(["eval": ["answer": ["extract": "regex", "pattern": "(unclosed"]]]),
                       ["eval.answer: pattern \"(unclosed\" is not a regular expression"])
        XCTAssertEqual(problems(["eval": ["answer": ["extract": "regex"]]]), ["eval.answer: extract: regex needs a pattern"])
        XCTAssertEqual(problems(["eval": ["answer": ["compare": "fuzzy"]]]), ["eval.answer.compare: \"fuzzy\" is not one of exact, math"])
        XCTAssertEqual(problems(["eval": "yes"]), ["eval: \"yes\" is not a mapping"])
        XCTAssertEqual(problems(["dataset": ["path": "d", "val_fraction": 0], "eval": [:]]),
                       ["eval: the data set has no validation split to answer (dataset.val_fraction is 0 and there is no dataset.val_path)"])
        XCTAssertEqual(problems(["dataset": ["path": "d", "val_fraction": 0, "val_path": "v"], "eval": [:]]), [])
        XCTAssertEqual(problems(["dataset": ["path": "d", "template": "im_start"], "eval": ["generate": ["reasoning_effort": "low"]]]),
                       ["eval.generate.reasoning_effort: only the harmony template has a reasoning effort (dataset.template is im_start)"])
        // The two reasoning-effort types (the spec's and the harmony renderer's, in TunaText) are one set.
        XCTAssertEqual(JobSpec.Eval.Generate.ReasoningEffort.allCases.map(\.rawValue), ["low", "medium", "high"])
        // An objective on the task evaluation with early stopping needs every eval to report it.
        let sweep = "name: s\ntrainer: native\nmodel: m\ndataset: {path: d}\nlora: {rank: [2, 4]}\n"
            + "objective: {metric: exact_match, mode: max}\nsweep: {early_stopping: {type: asha, grace_steps: 2, max_steps: 8}}\n"
        XCTAssertThrowsError(try SweepSpec.plan(yaml: sweep + "eval: {}\n")) {
            XCTAssert("\($0)".contains("objective.metric: exact_match with sweep.early_stopping needs eval.every_eval: true"), "\($0)")
        }
        XCTAssertNoThrow(try SweepSpec.plan(yaml: sweep + "eval: {every_eval: true}\n"))
    }

    // MARK: Helpers

    func goldenCase(_ name: String) throws -> [String: JSONValue] {
        let url = Self.repo.appendingPathComponent("contract/job-spec/\(name).json")
        return try XCTUnwrap(JSONValue.parse(Data(contentsOf: url)).objectValue)
    }

    func leafPaths(_ v: JSONValue, _ prefix: [String] = []) -> [[String]] {
        guard let o = v.objectValue, !o.isEmpty else { return [prefix] }
        return o.keys.sorted().flatMap { [prefix + [$0]] + leafPaths(o[$0]!, prefix + [$0]).filter { $0.count > prefix.count + 1 } }
    }

    func removing(_ path: [String], from v: JSONValue) -> JSONValue {
        guard var o = v.objectValue, let first = path.first else { return v }
        if path.count == 1 { o[first] = nil } else if let inner = o[first] { o[first] = removing(Array(path.dropFirst()), from: inner) }
        return .object(o)
    }
}
