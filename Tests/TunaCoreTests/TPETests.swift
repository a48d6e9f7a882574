import XCTest
@testable import TunaCore

/// TPE's proposals on hand-made results: when it proposes, that it is deterministic, that it
/// goes where the good results are, and that it stays inside every axis.
final class TPETests: XCTestCase {
    let minLoss = Objective.default
    let x = SweepAxis(path: ["x"], values: .uniform(0, 1))

    /// Results of f(x) = (x - 0.3)^2 at n evenly spread points.
    func parabola(_ n: Int) -> [TPE.Observation] {
        (0..<n).map { i in
            let v = (Double(i) + 0.5) / Double(n)
            return TPE.Observation(point: [.number(v)], value: (v - 0.3) * (v - 0.3))
        }
    }

    func testNoProposalBeforeStartupResultsAndRunningJobsDoNotCount() {
        let running = (0..<20).map { _ in TPE.Observation(point: [.number(0.5)], value: nil) }
        XCTAssertNil(TPE.propose(axes: [x], observations: parabola(9) + running, objective: minLoss, startup: 10, seed: 1, index: 30))
        XCTAssertNotNil(TPE.propose(axes: [x], observations: parabola(10), objective: minLoss, startup: 10, seed: 1, index: 30))
        XCTAssertEqual(TPE.goodCount(10), 1)
        XCTAssertEqual(TPE.goodCount(11), 2)
        XCTAssertEqual(TPE.goodCount(1000), 25, "capped, as Optuna's default gamma")
    }

    func testTheSameResultsSeedAndIndexGiveTheSameProposal() {
        let a = TPE.propose(axes: [x], observations: parabola(20), objective: minLoss, startup: 10, seed: 7, index: 21)
        let b = TPE.propose(axes: [x], observations: parabola(20), objective: minLoss, startup: 10, seed: 7, index: 21)
        XCTAssertEqual(a, b)
        let others = Set((22..<30).compactMap { TPE.propose(axes: [x], observations: parabola(20), objective: minLoss, startup: 10, seed: 7, index: $0) })
        XCTAssertGreaterThan(others.count, 4, "each job draws its own candidates")
    }

    func testProposalsGoWhereTheGoodResultsAre() {
        let proposals = (0..<200).compactMap {
            TPE.propose(axes: [x], observations: parabola(30), objective: minLoss, startup: 10, seed: 3, index: $0)?[0].doubleValue
        }
        XCTAssertEqual(proposals.count, 200)
        let meanDistance = proposals.map { abs($0 - 0.3) }.reduce(0, +) / 200
        // Uniform draws on [0, 1] are 0.29 from 0.3 on average.
        XCTAssertLessThan(meanDistance, 0.1, "\(meanDistance)")
        // Under max the best results are at the ends, far from 0.3.
        let maxed = (0..<200).compactMap {
            TPE.propose(axes: [x], observations: parabola(30), objective: Objective(metric: "acc", mode: .max), startup: 10, seed: 3, index: $0)?[0].doubleValue
        }
        XCTAssertGreaterThan(maxed.map { abs($0 - 0.3) }.reduce(0, +) / 200, 0.4)
    }

    func testEveryAxisFormStaysInItsDomain() {
        let axes = [SweepAxis(path: ["a"], values: .logUniform(1e-5, 1e-2)), SweepAxis(path: ["b"], values: .intUniform(2, 9)),
                    SweepAxis(path: ["c"], values: .grid(["q", "k", "v"]))]
        // Good results have small a, b = 8 and c = "k".
        let observations = (0..<24).map { i -> TPE.Observation in
            let a = 1e-5 * pow(1000, Double(i % 6) / 5), b = 2 + i % 8, c: JSONValue = ["q", "k", "v"][i % 3]
            let value = log10(a) + 5 + Double(abs(b - 8)) + (c == "k" ? 0 : 3)
            return TPE.Observation(point: [.number(a), .int(b), c], value: value)
        }
        var ks = 0
        for i in 0..<100 {
            let p = try! XCTUnwrap(TPE.propose(axes: axes, observations: observations, objective: minLoss, startup: 10, seed: 5, index: i))
            let a = p[0].doubleValue!, b = p[1].intValue!
            XCTAssert(a >= 1e-5 && a <= 1e-2, "\(a)")
            XCTAssert((2...9).contains(b), "\(b)")
            XCTAssertNotNil(["q", "k", "v"].firstIndex(of: p[2]))
            if p[2] == "k" { ks += 1 }
        }
        XCTAssertGreaterThan(ks, 60, "the good category is proposed most")
    }

    func testAStepBudgetNeedsTheLengthOfEveryJob() throws {
        func problems(_ spec: String) -> [String] {
            do { _ = try SweepSpec.plan(yaml: spec); return [] } catch TunaError.invalidSpec(let ps) { return ps } catch { return ["\(error)"] }
        }
        let native = "name: b\ntrainer: native\nmodel: m\ndataset: {path: d.jsonl}\n"
        XCTAssertEqual(try SweepSpec.plan(yaml: native + "train: {max_steps: 50}\nsweep: {max_steps_total: 120}").budget,
                       StepBudget(total: 120, jobSteps: 50))
        XCTAssertEqual(problems(native + "sweep: {max_steps_total: 120}"),
                       ["sweep.max_steps_total: needs the length of every job: set train.max_steps (one value, not swept)"])
        XCTAssertEqual(problems(native + "train: {max_steps: [50, 60]}\nsweep: {max_steps_total: 120}"),
                       ["sweep.max_steps_total: needs the length of every job: set train.max_steps (one value, not swept)"])
        XCTAssertEqual(problems(native + "train: {max_steps: 50}\nsweep: {max_steps_total: 0}"), ["sweep.max_steps_total: 0 is not a positive integer"])
        let command = "name: c\ntrainer: command\ncommand: [x]\na: [1, 2]\n"
        XCTAssertEqual(try SweepSpec.plan(yaml: command + "sweep: {max_steps_total: 90, early_stopping: {type: asha, grace_steps: 5, max_steps: 45}}").budget,
                       StepBudget(total: 90, jobSteps: 45))
        XCTAssertEqual(problems(command + "sweep: {max_steps_total: 90}"), [
            "sweep.max_steps_total: needs the length of every job: set train.max_steps (one value, not swept); a command trainer's steps are its own: set sweep.early_stopping.max_steps",
        ])
    }

    func testTheSpecSectionTakesTPE() throws {
        let plan = try SweepSpec.plan(yaml: "name: t\ntrainer: command\ncommand: [x]\nlr: {log_uniform: [1e-5, 1e-2]}\nsweep: {method: tpe, count: 12, startup: 4, seed: 3}")
        XCTAssertEqual(plan.method, .tpe)
        XCTAssertEqual(plan.jobs.count, 12, "stored with random draws, validated like random search's")
        XCTAssertEqual(plan.startup, 4)
        func problems(_ sweep: String) -> [String] {
            do { _ = try SweepSpec.plan(yaml: "name: t\ntrainer: command\ncommand: [x]\nlr: {uniform: [0, 1]}\nsweep: \(sweep)"); return [] }
            catch TunaError.invalidSpec(let ps) { return ps } catch { return ["\(error)"] }
        }
        XCTAssertEqual(problems("{method: tpe}"), ["sweep.count: TPE search needs a count (how many jobs to run)"])
        XCTAssertEqual(problems("{method: tpe, count: 5, startup: 0}"), ["sweep.startup: 0 is not a positive integer"])
        XCTAssertEqual(problems("{method: random, count: 5, startup: 2}"), ["sweep.startup: only TPE search takes a startup (the random jobs before it proposes)"])
        XCTAssertEqual(problems("{method: bayes, count: 5}"), ["sweep.method: \"bayes\" is not one of grid, random, tpe"])
    }

    /// What adaptive search cannot do is refused at submit: TPE choosing a job's resources or
    /// trainer (fixed before its proposal, at the lease), early stopping without validation
    /// data or with the validation data swept.
    func testAdaptiveSearchRefusesWhatItCannotJudgeOrSchedule() throws {
        func problems(_ spec: String) -> [String] {
            do { _ = try SweepSpec.plan(yaml: spec); return [] } catch TunaError.invalidSpec(let ps) { return ps } catch { return ["\(error)"] }
        }
        let tpe = "name: t\ntrainer: command\ncommand: [x]\nlr: {uniform: [0, 1]}\nsweep: {method: tpe, count: 4}\n"
        XCTAssertEqual(problems(tpe + "resources: {gpus: [1, 2]}\npriority: [0, 1]"), [
            "priority: TPE cannot search a job's trainer, resources, priority or max_attempts (they decide which worker takes the job, before TPE proposes its parameters); use grid or random search",
            "resources.gpus: TPE cannot search a job's trainer, resources, priority or max_attempts (they decide which worker takes the job, before TPE proposes its parameters); use grid or random search",
        ])
        XCTAssertEqual(problems(tpe.replacingOccurrences(of: "tpe", with: "random") + "resources: {gpus: [1, 2]}"), [], "random search stores them at submit")
        let native = "name: n\ntrainer: native\nmodel: m\ntrain: {learning_rate: [0.1, 0.2]}\nsweep: {early_stopping: {type: asha, grace_steps: 5, max_steps: 50}}\n"
        XCTAssertEqual(problems(native + "dataset: {path: d.jsonl}"), [])
        XCTAssertEqual(problems(native + "dataset: {path: d.jsonl, val_fraction: 0}"), [
            "sweep.early_stopping: needs validation data to judge jobs by (dataset.val_fraction is 0 and there is no dataset.val_path): every job would stop at its first rung with no eval",
        ])
        XCTAssertEqual(problems(native + "dataset: {path: d.jsonl, val_fraction: 0, val_path: v.jsonl}"), [])
        XCTAssertEqual(problems(native + "dataset: {path: [a.jsonl, b.jsonl], val_fraction: [0.1, 0.2]}"), [
            "dataset.path: may not be swept with sweep.early_stopping: jobs are compared on the same validation data",
            "dataset.val_fraction: may not be swept with sweep.early_stopping: jobs are compared on the same validation data",
        ])
        XCTAssertEqual(problems(native + "dataset: {path: [a.jsonl, b.jsonl], val_path: v.jsonl}"), [], "a fixed val_path: the training data may vary")
        XCTAssertEqual(problems(native + "dataset: [{path: a.jsonl}, {path: b.jsonl, val_path: v.jsonl}]"),
                       ["dataset: may not be swept with sweep.early_stopping: jobs are compared on the same validation data"])
        XCTAssertNoThrow(try SweepSpec.plan(yaml: native + "dataset: {path: d.jsonl, val_fraction: 0}", stored: true),
                         "a stored sweep is expanded as it was accepted")
    }
}
