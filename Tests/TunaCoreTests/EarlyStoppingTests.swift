import XCTest
@testable import TunaCore

/// ASHA's rule in stopping mode, on hand-made tables of values at a rung.
final class EarlyStoppingTests: XCTestCase {
    let rule = EarlyStopping(graceSteps: 10, maxSteps: 100, reductionFactor: 3)
    let minLoss = Objective.default

    func testRungsAreGraceTimesEtaPowersBelowMaxSteps() {
        XCTAssertEqual(rule.rungs, [10, 30, 90])
        XCTAssertEqual(EarlyStopping(graceSteps: 10, maxSteps: 90, reductionFactor: 3).rungs, [10, 30])
        XCTAssertEqual(EarlyStopping(graceSteps: 1, maxSteps: Int.max, reductionFactor: 2).rungs.count, 63, "no overflow")
        XCTAssertEqual(rule.rungsReached(at: 35, recorded: []), [10, 30], "one eval past two rungs records at both")
        XCTAssertEqual(rule.rungsReached(at: 35, recorded: [10]), [30])
        XCTAssertEqual(rule.rungsReached(at: 9, recorded: []), [])
    }

    func testOnlyTheBestThirdGoesOnAndNobodyIsJudgedWithTooFewValues() {
        XCTAssertEqual(rule.judge([(1, 0.5), (2, 0.9)], objective: minLoss).out, [], "two values: no top 1/3 yet")
        let three = rule.judge([(1, 0.5), (2, 0.9), (3, 0.4)], objective: minLoss)
        XCTAssertEqual(three, EarlyStopping.Judgement(count: 3, keep: 1, cut: 0.4, out: [1, 2]))
        let nine = rule.judge((1...9).map { (JobID($0), Double(10 - $0)) }, objective: minLoss)
        XCTAssertEqual(nine.keep, 3)
        XCTAssertEqual(nine.cut, 3)
        XCTAssertEqual(Set(nine.out), Set((1...6).map(JobID.init)))
        // Higher is better under mode max.
        XCTAssertEqual(rule.judge([(1, 0.5), (2, 0.9), (3, 0.4)], objective: Objective(metric: "accuracy", mode: .max)).out, [1, 3])
    }

    func testTiesGoToTheLowerJobIdSoTheCutIsExact() {
        let j = rule.judge([(7, 1.0), (3, 1.0), (5, 1.0), (9, 2.0), (4, 1.0), (8, 3.0)], objective: minLoss)
        XCTAssertEqual(j.keep, 2)
        XCTAssertEqual(j.out, [5, 7, 9, 8], "jobs 3 and 4 keep their places; the rest in rank order")
    }

    func testTheObjectivesValueInAnEval() {
        XCTAssertEqual(EarlyStopping.value(of: ["event": "eval", "loss": 1.5, "accuracy": 0.7], objective: minLoss), 1.5)
        XCTAssertEqual(EarlyStopping.value(of: ["event": "eval", "loss": 1.5, "accuracy": 0.7], objective: Objective(metric: "accuracy", mode: .max)), 0.7)
        XCTAssertNil(EarlyStopping.value(of: ["event": "eval", "loss": 1.5], objective: Objective(metric: "accuracy", mode: .max)))
        XCTAssertNil(EarlyStopping.value(of: ["event": "eval", "loss": .number(.nan)], objective: minLoss))
    }

    func testTheReasonNamesStepValueCutAndRung() {
        let j = rule.judge([(1, 0.5), (2, 0.9), (3, 0.4)], objective: minLoss)
        XCTAssertEqual(rule.explain(step: 12, rung: 10, value: 0.9, objective: minLoss, judgement: j),
                       "stopped at step 12: val_loss 0.9 not in the top 1/3 of 3 jobs at rung 10 (cut 0.4)")
    }

    func testTheSpecSectionIsCheckedAndWhatIsNotAvailableIsSaid() throws {
        func problems(_ es: String) -> [String] {
            do { _ = try SweepSpec.plan(yaml: "name: c\ntrainer: command\ncommand: [x]\na: [1, 2]\nsweep: {early_stopping: \(es)}"); return [] }
            catch TunaError.invalidSpec(let ps) { return ps } catch { return ["\(error)"] }
        }
        let plan = try SweepSpec.plan(yaml: "name: c\ntrainer: command\ncommand: [x]\na: [1, 2]\nsweep: {early_stopping: {type: asha, mode: stopping, grace_steps: 5, max_steps: 50}}")
        XCTAssertEqual(plan.earlyStopping, EarlyStopping(graceSteps: 5, maxSteps: 50, reductionFactor: 3))
        XCTAssertEqual(problems("{type: median, mode: stopping, grace_steps: 5, max_steps: 50}"), ["sweep.early_stopping.type: median is not available yet; asha is"])
        XCTAssertEqual(problems("{type: asha, mode: promotion, grace_steps: 5, max_steps: 50}"),
                       ["sweep.early_stopping.mode: promotion (pausing jobs at a rung and resuming the best) is not available yet; say mode: stopping"])
        XCTAssertEqual(problems("{type: asha, grace_steps: 5, max_steps: 50}"),
                       ["sweep.early_stopping.mode: null is not stopping (required: promotion, the default to come, is not available yet)"])
        XCTAssertEqual(problems("{type: asha, mode: stopping, grace_steps: 50, max_steps: 50, brackets: 2, rungs: 3}"), [
            "sweep.early_stopping.rungs: unknown field (expected brackets, grace_steps, max_steps, mode, reduction_factor, type)",
            "sweep.early_stopping: grace_steps (50) must be below max_steps (50)",
            "sweep.early_stopping.brackets: 2: only 1 bracket is available yet",
        ])
        XCTAssertEqual(problems("{type: asha, mode: stopping, reduction_factor: 1}"), [
            "sweep.early_stopping.reduction_factor: 1 is not an integer >= 2",
            "sweep.early_stopping.grace_steps: required (the first rung, in training steps)",
            "sweep.early_stopping.max_steps: required (the steps a job trains when it is never stopped)",
        ])
    }
}
