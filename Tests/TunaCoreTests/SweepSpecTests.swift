import XCTest
@testable import TunaCore

final class SweepSpecTests: XCTestCase {
    let base = """
    name: t
    model: /models/gpt-oss-20b
    trainer: native
    dataset: {path: data.csv, format: csv, fields: {prompt: problem, response: solution}}
    """

    func plan(_ extra: String) throws -> SweepPlan { try SweepSpec.plan(yaml: base + "\n" + extra) }

    func problems(_ yaml: String) -> [String] {
        do { _ = try SweepSpec.plan(yaml: yaml); return [] } catch TunaError.invalidSpec(let ps) { return ps } catch { return ["\(error)"] }
    }

    /// Every example spec in jobs/ is valid, with its placeholders filled in as the README says.
    func testTheExampleSpecsInJobsAreValid() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = repo.appendingPathComponent("jobs")
        let specs = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }.sorted()
        XCTAssertGreaterThanOrEqual(specs.count, 5)
        for name in specs {
            let text = try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)
                .replacingOccurrences(of: "@DEMO@", with: "/tmp/demo").replacingOccurrences(of: "@REPO@", with: repo.path)
            XCTAssertNoThrow(try SweepSpec.plan(yaml: text), name)
        }
        let tpe = try SweepSpec.plan(yaml: String(contentsOf: dir.appendingPathComponent("demo-tpe.yaml"), encoding: .utf8))
        XCTAssertEqual(tpe.method, .tpe)
        let asha = try SweepSpec.plan(yaml: String(contentsOf: dir.appendingPathComponent("demo-asha.yaml"), encoding: .utf8))
        XCTAssertEqual(asha.earlyStopping?.mode, .promotion)
    }

    func testGridIsTheCartesianProductWithDefaultsFilledIn() throws {
        let p = try plan("""
        lora: {rank: [8, 64], alpha: 128, target_modules: [q_proj, k_proj, v_proj, o_proj]}
        train: {learning_rate: [1e-4, 2e-4, 5e-4], epochs: 2}
        """)
        XCTAssertEqual(p.jobs.count, 6)
        XCTAssertEqual(p.varyingKeys, ["lora.rank", "train.learning_rate"])
        XCTAssertEqual(Set(p.jobs.map(\.hash)).count, 6)
        let j = p.jobs[0].params
        XCTAssertEqual(j["lora"]?["rank"], .int(8))
        XCTAssertEqual(j["lora"]?["target_modules"], ["q_proj", "k_proj", "v_proj", "o_proj"])
        XCTAssertEqual(j["train"]?["epochs"], .int(2))
        XCTAssertEqual(j["train"]?["scheduler"], "linear")          // default
        XCTAssertEqual(j["max_attempts"], .int(3))                    // default
        XCTAssertEqual(p.jobs[5].varying["train.learning_rate"], .number(5e-4))
    }

    func testListValuedFieldsSweepOnlyAsListsOfLists() throws {
        let literal = try plan("lora: {target_modules: [q_proj, v_proj]}")
        XCTAssertEqual(literal.jobs.count, 1)
        let swept = try plan("lora: {target_modules: [[q_proj, v_proj], [all-linear]]}")
        XCTAssertEqual(swept.jobs.count, 2)
        XCTAssertEqual(swept.jobs[1].params["lora"]?["target_modules"], ["all-linear"])
    }

    func testRandomSearchIsSeededAndDrawsCountDistinctJobs() throws {
        let spec = """
        sweep: {method: random, count: 20, seed: 7}
        train: {learning_rate: {log_uniform: [1e-5, 1e-3]}, batch_size: [1, 2, 4]}
        lora: {rank: {int_uniform: [4, 64]}}
        """
        let a = try plan(spec), b = try plan(spec)
        XCTAssertEqual(a.jobs.count, 20)
        XCTAssertEqual(a.jobs.map(\.hash), b.jobs.map(\.hash), "same seed, same jobs")
        for j in a.jobs {
            let lr = try XCTUnwrap(j.params["train"]?["learning_rate"]?.doubleValue)
            XCTAssert(lr >= 1e-5 && lr <= 1e-3)
            let r = try XCTUnwrap(j.params["lora"]?["rank"]?.intValue)
            XCTAssert((4...64).contains(r))
        }
        let c = try plan(spec.replacingOccurrences(of: "seed: 7", with: "seed: 8"))
        XCTAssertNotEqual(a.jobs.map(\.hash), c.jobs.map(\.hash))
    }

    func testRandomSearchRefusesACountLargerThanTheSpace() {
        let ps = problems(base + "\nsweep: {method: random, count: 5}\nlora: {rank: [8, 16]}")
        XCTAssertEqual(ps.count, 1)
        XCTAssert(ps[0].contains("sweep.count"), ps[0])
    }

    func testBadFieldsAreNamedWithValueAndExpectation() {
        let ps = problems(base + """

        lora: {rank: -4, dropout: 1.5, target_modules: [q_proj, qq_proj]}
        train: {learning_rat: 1e-4, scheduler: cosine_restarts, epochs: 0}
        """)
        XCTAssert(ps.contains("lora.rank: -4 is not a positive integer"), "\(ps)")
        XCTAssert(ps.contains { $0.hasPrefix("lora.dropout: 1.5 is not a number >= 0 and < 1") }, "\(ps)")
        XCTAssert(ps.contains { $0.hasPrefix("lora.target_modules:") }, "\(ps)")
        XCTAssert(ps.contains { $0.hasPrefix("train.learning_rat: unknown field") }, "\(ps)")
        XCTAssert(ps.contains { $0.hasPrefix("train.scheduler: \"cosine_restarts\" is not one of") }, "\(ps)")
        XCTAssert(ps.contains("train.epochs: 0 is not a positive integer"), "\(ps)")
    }

    func testOneBadValueInAGridRefusesTheWholeSpec() {
        let ps = problems(base + "\nlora: {rank: [8, -1, 16]}")
        XCTAssertEqual(ps, ["lora.rank: -1 is not a positive integer"])
    }

    func testRequiredFieldsAndTopLevelShape() {
        XCTAssert(problems("name: x\ntrainer: native").contains("model: required"))
        XCTAssert(problems("- a\n- b").first?.contains("expected a mapping") == true)
        XCTAssert(problems("name: x").contains("trainer: required"))
        XCTAssert(problems("name: x\ntrainer: tpu").contains { $0.hasPrefix("trainer: \"tpu\" is not one of native, torch, command") })
        XCTAssert(problems("name: x\ntrainer: command").contains { $0.hasPrefix("command: required") })
    }

    func testCommandTrainerPassesUnknownFieldsThrough() throws {
        let p = try SweepSpec.plan(yaml: """
        name: c
        trainer: command
        command: [./train.sh, --fast]
        lr: [0.1, 0.2]
        extra: {depth: 3, tags: {value: [a, b]}}
        resources: {gpus: 1}
        """)
        XCTAssertEqual(p.jobs.count, 2)
        XCTAssertEqual(p.jobs[0].params["command"], ["./train.sh", "--fast"])
        XCTAssertEqual(p.jobs[0].params["extra"]?["tags"], ["a", "b"])
        XCTAssertEqual(p.jobs[1].params["lr"], .number(0.2))
        XCTAssertEqual(p.jobs[0].params["resources"]?["gpus"], .int(1))
    }

    func testDistributionsNeedRandomSearch() {
        let ps = problems(base + "\ntrain: {learning_rate: {log_uniform: [1e-5, 1e-3]}}")
        XCTAssert(ps.first?.contains("sweep: {method: random") == true, "\(ps)")
    }

    func testIdenticalJobsAreRefused() {
        // Two grid values that resolve to the same job (2 and 2.0) would make a duplicate.
        let ps = problems(base + "\nlora: {rank: [2, 2.0]}")
        XCTAssert(ps.contains { $0.contains("identical parameters") }, "\(ps)")
    }

    /// A grid large enough to be checked on several threads (ranges of 10,000 jobs and more):
    /// a duplicate whose two jobs fall in different ranges is still found, and named.
    func testDuplicatesAcrossCheckingRangesAreFound() {
        let values = (0..<30_000).map(String.init).joined(separator: ",")
        let ps = problems("name: c\ntrainer: command\ncommand: [x]\na: [\(values), 7]")
        XCTAssertEqual(ps, ["sweep: jobs 7 and 30000 have identical parameters (a=7)"])
    }

    /// Jobs are expanded on access, not kept: every access gives the same job, and a large grid
    /// decodes its points from the index in order (the last axis fastest).
    func testJobsAreExpandedOnAccessInGridOrder() throws {
        let p = try SweepSpec.plan(yaml: "name: c\ntrainer: command\ncommand: [x]\na: [1, 2, 3]\nb: [x, y]")
        XCTAssertEqual(p.jobs.count, 6)
        XCTAssertEqual(p.jobs.map { [$0.varying["a"]!, $0.varying["b"]!] },
                       [[1, "x"], [1, "y"], [2, "x"], [2, "y"], [3, "x"], [3, "y"]])
        XCTAssertEqual(p.jobs[4], p.jobs[4])
        XCTAssertEqual(Set(p.jobs.map(\.hash)).count, 6)
    }

    /// `objective` configures the sweep: read and checked, never an axis, never in a job.
    func testObjectiveIsTheSweepsAndIsChecked() throws {
        XCTAssertEqual(try plan("").objective, .default)
        let p = try plan("objective: {metric: top1_agreement, mode: max}\nlora: {rank: [4, 8]}")
        XCTAssertEqual(p.objective, Objective(metric: "top1_agreement", mode: .max))
        XCTAssertEqual(p.varyingKeys, ["lora.rank"])
        XCTAssertNil(p.jobs[0].params["objective"])
        XCTAssertEqual(problems(base + "\nobjective: {metric: \"x'); DROP\", mode: lowest, goal: 1}"), [
            "objective.goal: unknown field (expected metric, mode)",
            #"objective.metric: "x'); DROP" is not val_loss or the name of an eval field (letters, digits, '_'; not epoch, event, graded, keep, loss, step, tokens)"#,
            "objective.mode: \"lowest\" is not min or max",
        ])
        XCTAssertEqual(problems(base + "\nobjective: {metric: loss}").count, 1, "`loss` is val_loss's field, named val_loss")
        // A command trainer's job does not receive it either.
        let c = try SweepSpec.plan(yaml: "name: c\ntrainer: command\ncommand: [x]\nobjective: {metric: score, mode: max}\na: [1, 2]")
        XCTAssertNil(c.jobs[0].params["extra"]?["objective"])
    }

    func testHashIgnoresKeyOrderAndFormatting() throws {
        let a = try SweepSpec.plan(yaml: "name: c\ntrainer: command\ncommand: [x]\na: 1\nb: 2")
        let b = try SweepSpec.plan(yaml: "{b: 2, a: 1, command: [x], trainer: command, name: c}")
        XCTAssertEqual(a.jobs[0].hash, b.jobs[0].hash)
    }

    func testExampleSpecsInJobsValidate() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../jobs").standardized
        let specs = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }
        XCTAssertFalse(specs.isEmpty)
        for f in specs {
            let text = try String(contentsOf: dir.appendingPathComponent(f), encoding: .utf8)
            XCTAssertNoThrow(try SweepSpec.plan(yaml: text), f)
        }
    }

    func testPruneJobsTakeAPruneSectionAndNoLoRA() throws {
        let p = try plan("task: prune\nprune: {keep: [16, 24], score: reap}")
        XCTAssertEqual(p.jobs.count, 2)
        let job = p.jobs[0].params
        XCTAssertEqual(job["task"], "prune")
        XCTAssertEqual(job["prune"]?["score"], "reap")
        XCTAssertEqual(job["prune"]?["keep_super_experts"], true)
        XCTAssertNil(job["lora"])
        XCTAssertNil(job["train"])
        XCTAssert(problems(base + "\ntask: prune").contains { $0.hasPrefix("prune: required") })
        XCTAssert(problems(base + "\ntask: prune\nprune: {keep: 0}").contains { $0.hasPrefix("prune.keep: 0 is not a positive integer") })
        XCTAssert(problems(base + "\ntask: prune\nprune: {keep: 8}\nlora: {rank: 8}").contains { $0.hasPrefix("lora: a prune job takes no lora section") })
        XCTAssert(problems(base + "\nprune: {keep: 8}").contains { $0.hasPrefix("prune: only `task: prune` jobs") })
        XCTAssert(problems(base + "\ntask: prune\nprune: {keep: 8, score: magic}").contains { $0.hasPrefix("prune.score:") })
        // the validated form always names the task, so a trainer never infers it from an absence
        XCTAssertEqual(try plan("").jobs[0].params["task"], "lora")
        // the native trainer takes no torch section, prune job or not
        XCTAssert(problems(base + "\ntask: prune\nprune: {keep: 8}\ntorch: {experts: eager}").contains { $0.hasPrefix("torch: only torch jobs") })
    }

    /// The torch trainer runs prune jobs too (worker/tuna_torch/prune.py); they get the torch
    /// section (how its forward passes compute) like its LoRA jobs.
    func testTorchPruneJobsAreAccepted() throws {
        let torch = base.replacingOccurrences(of: "trainer: native", with: "trainer: torch")
        let p = try SweepSpec.plan(yaml: torch + "\ntask: prune\nprune: {keep: [16, 24], also_evaluate: [20]}\ntorch: {experts: mxfp4}")
        XCTAssertEqual(p.jobs.count, 2)
        let job = p.jobs[0].params
        XCTAssertEqual(job["trainer"], "torch")
        XCTAssertEqual(job["task"], "prune")
        XCTAssertEqual(job["prune"]?["keep"], 16)
        XCTAssertEqual(job["torch"]?["experts"], "mxfp4")
        XCTAssertEqual(job["torch"]?["attention"], "auto")
        XCTAssertNil(job["lora"])
        XCTAssertNil(job["train"])
        XCTAssertEqual(try SweepSpec.plan(yaml: torch + "\ntask: prune\nprune: {keep: 8}").jobs[0].params["torch"]?["experts"], "auto")
        XCTAssert(problems(torch + "\ntask: prune\nprune: {keep: 8}\ntrain: {epochs: 1}").contains { $0.hasPrefix("train: a prune job takes no train section") })
    }

    /// `prune.also_evaluate` is list-valued: a plain list is the value (one job evaluating
    /// every N listed), only a list of lists sweeps.
    func testAlsoEvaluateIsAListNotAnAxis() throws {
        let one = try plan("task: prune\nprune: {keep: 20, also_evaluate: [24, 16]}")
        XCTAssertEqual(one.jobs.count, 1)
        XCTAssertEqual(one.jobs[0].params["prune"]?["also_evaluate"], [24, 16])
        let two = try plan("task: prune\nprune: {keep: 20, also_evaluate: [[24], [16, 12]]}")
        XCTAssertEqual(two.jobs.count, 2)
        XCTAssertEqual(two.varyingKeys, ["prune.also_evaluate"])
        XCTAssertEqual(two.jobs[1].params["prune"]?["also_evaluate"], [16, 12])
        XCTAssertEqual(try plan("task: prune\nprune: {keep: 20, also_evaluate: {value: [24]}}").jobs[0].params["prune"]?["also_evaluate"], [24])
    }

    func testTorchJobsGetATorchSection() throws {
        let torch = base.replacingOccurrences(of: "trainer: native", with: "trainer: torch")
        let job = try SweepSpec.plan(yaml: torch + "\ntorch: {attention: flex_attention}").jobs[0].params
        XCTAssertEqual(job["torch"]?["attention"], "flex_attention")
        XCTAssertEqual(job["torch"]?["experts"], "auto")
        XCTAssertEqual(job["torch"]?["chunked_loss"], true)
        XCTAssert(problems(base + "\ntorch: {attention: eager}").contains { $0.hasPrefix("torch: only torch jobs") })
        XCTAssert(problems(torch + "\ntorch: {attention: sdpa}").contains { $0.hasPrefix("torch.attention:") })
        // mxfp4: expert weights kept quantized on the GPU (worker/tuna_torch/mxfp4.py)
        XCTAssertEqual(try SweepSpec.plan(yaml: torch + "\ntorch: {experts: mxfp4}").jobs[0].params["torch"]?["experts"], "mxfp4")
        XCTAssert(problems(torch + "\ntorch: {experts: fp8}").contains { $0.hasPrefix("torch.experts: \"fp8\" is not one of auto, eager, grouped_mm, mxfp4") })
        XCTAssert(problems(base + "\nlora: {target_modules: [router]}").contains { $0.hasPrefix("lora.target_modules:") })
    }
}
