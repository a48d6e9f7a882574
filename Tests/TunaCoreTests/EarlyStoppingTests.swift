import XCTest
@testable import TunaCore

/// The early-stopping rules (ASHA stopping and promotion, brackets, median) on hand-made tables.
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
        XCTAssertEqual(three, EarlyStopping.Judgement(count: 3, keep: 1, cut: 0.4, out: [1, 2], kept: [3]))
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

    func testTheSpecSectionIsCheckedWithDefaultsPerRule() throws {
        func plan(_ es: String) throws -> SweepPlan {
            try SweepSpec.plan(yaml: "name: c\ntrainer: command\ncommand: [x]\na: [1, 2]\nsweep: {early_stopping: \(es)}")
        }
        func problems(_ es: String) -> [String] {
            do { _ = try plan(es); return [] } catch TunaError.invalidSpec(let ps) { return ps } catch { return ["\(error)"] }
        }
        XCTAssertEqual(try plan("{type: asha, mode: stopping, grace_steps: 5, max_steps: 50}").earlyStopping,
                       EarlyStopping(graceSteps: 5, maxSteps: 50, reductionFactor: 3))
        XCTAssertEqual(try plan("{type: asha, grace_steps: 5, max_steps: 50}").earlyStopping?.mode, .promotion, "asha promotes by default")
        XCTAssertEqual(try plan("{type: median, grace_steps: 5, max_steps: 50}").earlyStopping,
                       EarlyStopping(type: .median, mode: .stopping, graceSteps: 5, maxSteps: 50, minCompleted: 5))
        XCTAssertEqual(try plan("{type: asha, grace_steps: 1, max_steps: 50, brackets: 3}").earlyStopping?.brackets, 3)
        XCTAssertEqual(problems("{type: median, mode: promotion, grace_steps: 5, max_steps: 50, reduction_factor: 2}"), [
            "sweep.early_stopping.reduction_factor: unknown field for median (expected grace_steps, max_steps, min_completed, mode, type)",
            "sweep.early_stopping.mode: the median rule only stops (mode: stopping)",
        ])
        XCTAssertEqual(problems("{type: hyperband, grace_steps: 5, max_steps: 50}"), ["sweep.early_stopping.type: \"hyperband\" is not asha or median"])
        XCTAssertEqual(problems("{type: asha, mode: stopping, grace_steps: 50, max_steps: 50, brackets: 2, rungs: 3}"), [
            "sweep.early_stopping.rungs: unknown field for asha (expected brackets, grace_steps, max_steps, mode, reduction_factor, type)",
            "sweep.early_stopping: grace_steps (50) must be below max_steps (50)",
        ])
        XCTAssertEqual(problems("{type: asha, grace_steps: 10, max_steps: 50, brackets: 3}"),
                       ["sweep.early_stopping.brackets: bracket 2 would start at step 10 x 3^2, not below max_steps (50); use at most 2 brackets"])
        XCTAssertEqual(problems("{type: asha, mode: stopping, reduction_factor: 1}"), [
            "sweep.early_stopping.reduction_factor: 1 is not an integer >= 2",
            "sweep.early_stopping.grace_steps: required (the first rung, in training steps)",
            "sweep.early_stopping.max_steps: required (the steps a job trains when it is never stopped)",
        ])
        // A rule stored before brackets and the median rule reads back with their defaults.
        let old = try JSONDecoder().decode(EarlyStopping.self, from: Data(#"{"type":"asha","mode":"stopping","grace_steps":5,"max_steps":50,"reduction_factor":2}"#.utf8))
        XCTAssertEqual(old, EarlyStopping(graceSteps: 5, maxSteps: 50, reductionFactor: 2))
    }

    // MARK: promotion

    let promoting = EarlyStopping(type: .asha, mode: .promotion, graceSteps: 10, maxSteps: 100, reductionFactor: 3)

    func testAPausedJobTrainsToItsBracketsNextRung() {
        XCTAssertEqual(promoting.pauseAt(recorded: [], bracket: 0), 10)
        XCTAssertEqual(promoting.pauseAt(recorded: [10], bracket: 0), 30)
        XCTAssertEqual(promoting.pauseAt(recorded: [10, 30], bracket: 0), 90)
        XCTAssertNil(promoting.pauseAt(recorded: [10, 30, 90], bracket: 0), "past the last rung: train to max_steps")
        XCTAssertNil(rule.pauseAt(recorded: [], bracket: 0), "stopping mode never pauses")
        var hyperband = promoting
        hyperband.brackets = 2
        XCTAssertEqual(hyperband.rungs(bracket: 1), [30, 90], "bracket 1 starts eta times later")
        XCTAssertEqual(hyperband.pauseAt(recorded: [], bracket: 1), 30)
        XCTAssertEqual((0..<5).map(hyperband.bracket(ofIndex:)), [0, 1, 0, 1, 0], "jobs are dealt to brackets round robin")
        XCTAssertEqual(hyperband.recordedSteps(at: 35, recorded: [], bracket: 1), [30])
    }

    func testOnlyPausedJobsInTheTopThirdArePromotedBestFirst() {
        let values: [(job: JobID, value: Double)] = [(1, 0.9), (2, 0.3), (3, 0.5), (4, 0.4), (5, 0.8), (6, 0.7)]
        // n = 6, keep 2: jobs 2 and 4. Job 2 is running on (already promoted), job 4 is paused.
        let (j, promoted) = promoting.promotions(values, paused: [1, 3, 4, 5], objective: minLoss)
        XCTAssertEqual(j.kept, [2, 4])
        XCTAssertEqual(j.cut, 0.4)
        XCTAssertEqual(promoted, [4])
        XCTAssertEqual(promoting.promotions(Array(values.prefix(2)), paused: [1, 2], objective: minLoss).promoted, [],
                       "fewer than eta values: nobody is promoted yet")
        XCTAssertEqual(promoting.promotions([(5, 1.0), (3, 1.0), (9, 1.0)], paused: [3, 5, 9], objective: minLoss).promoted, [3],
                       "a tie goes to the lower id")
        XCTAssertEqual(promoting.promotions(values, paused: [2, 4], objective: Objective(metric: "acc", mode: .max)).promoted, [],
                       "under max the best are jobs 1 and 5")
        // A sweep with nothing else to run drains: the best ceil(n/eta), so one job alone at the
        // top rung still trains to the end.
        XCTAssertEqual(promoting.promotions([(7, 0.2)], paused: [7], objective: minLoss).promoted, [])
        XCTAssertEqual(promoting.promotions([(7, 0.2)], paused: [7], objective: minLoss, draining: true).promoted, [7])
        XCTAssertEqual(promoting.promotions(values, paused: [1, 3, 4, 5], objective: minLoss, draining: true).promoted, [4],
                       "six values: still the best two")
        XCTAssertEqual(promoting.promotions(Array(values.prefix(4)), paused: [1, 3, 4], objective: minLoss, draining: true).promoted, [4],
                       "four values: the best two (2, 4) rounded up")
        XCTAssertEqual(promoting.explainPromotion(rung: 30, value: 0.4, objective: minLoss, judgement: j),
                       "promoted at step 30: val_loss 0.4 in the top 1/3 of 6 jobs at rung 30 (cut 0.4)")
        XCTAssertEqual(promoting.explainNotPromoted(rung: 10, value: nil, objective: minLoss, judgement: nil),
                       "stopped at step 10: no val_loss at rung 10; the sweep has nothing left to run")
    }

    /// Across a sweep's paused jobs: each bracket's rung judged among its own jobs, the highest
    /// rung first; when the sweep runs dry, draining promotes from the highest rung only, and
    /// then stops the rest with their rung's judgement.
    func testPromotionsAcrossRungsAndBracketsAndTheSweepsEnd() {
        var rule = promoting
        rule.brackets = 2
        let values: [[Int]: [(job: JobID, value: Double)]] = [
            [10, 0]: [(1, 0.5), (3, 0.4), (5, 0.9)],           // bracket 0, rung 10: keep 1 (job 3)
            [30, 1]: [(2, 0.8), (4, 0.7), (6, 0.1)],           // bracket 1, rung 30: keep 1 (job 6)
            [30, 0]: [(3, 0.3)],                               // job 3 alone at bracket 0's rung 30
        ]
        let paused: [EarlyStopping.Paused] = [.init(job: 1, rung: 10, bracket: 0), .init(job: 5, rung: 10, bracket: 0),
                                              .init(job: 3, rung: 30, bracket: 0), .init(job: 6, rung: 30, bracket: 1),
                                              .init(job: 2, rung: 30, bracket: 1)]
        let lookup: (Int, Int) -> [(job: JobID, value: Double)] = { values[[$0, $1]] ?? [] }
        XCTAssertEqual(rule.promote(paused: paused, values: lookup, objective: minLoss).map(\.job), [6],
                       "bracket 1's best at 30; job 3 is bracket 0's best at 10 but paused at 30, alone there")
        let end = rule.settle(paused: paused, values: lookup, objective: minLoss)
        XCTAssertEqual(end.promoted.map(\.job), [6], "draining: one rung at a time, the highest first")
        XCTAssertEqual(end.stopped, [])
        let next = rule.settle(paused: paused.filter { $0.job != 6 && $0.job != 2 }, values: lookup, objective: minLoss)
        XCTAssertEqual(next.promoted.map(\.job), [3], "then job 3, alone at bracket 0's rung 30: the top third rounded up is 1")
        let last = rule.settle(paused: [.init(job: 1, rung: 10, bracket: 0), .init(job: 5, rung: 10, bracket: 0)], values: lookup, objective: minLoss)
        XCTAssertEqual(last.promoted, [])
        XCTAssertEqual(last.stopped.map(\.reason), [
            "stopped at step 10: val_loss 0.5 not in the top 1/3 of 3 jobs at rung 10 (cut 0.4); the sweep has nothing left to run",
            "stopped at step 10: val_loss 0.9 not in the top 1/3 of 3 jobs at rung 10 (cut 0.4); the sweep has nothing left to run",
        ])
    }

    // MARK: median

    func testTheMedianRuleComparesTheBestSoFarWithTheMedianOfRunningAverages() {
        let median = EarlyStopping(type: .median, mode: .stopping, graceSteps: 20, maxSteps: 100, minCompleted: 3)
        // Running averages at step 20: (1.0+0.8)/2 = 0.9, (2.0+1.0)/2 = 1.5, (0.6+0.4)/2 = 0.5; median 0.9.
        let done: [[(step: Int, value: Double)]] = [[(10, 1.0), (20, 0.8), (30, 0.1)], [(10, 2.0), (20, 1.0)], [(10, 0.6), (20, 0.4)]]
        XCTAssertNil(median.medianStop(step: 10, job: [(10, 5.0)], completed: done, objective: minLoss), "before grace_steps")
        XCTAssertNil(median.medianStop(step: 20, job: [(10, 0.85), (20, 3.0)], completed: done, objective: minLoss), "best 0.85 beats 0.9")
        let v = median.medianStop(step: 20, job: [(10, 1.2), (20, 0.95)], completed: done, objective: minLoss)
        XCTAssertEqual(v?.best, 0.95)
        XCTAssertEqual(v?.median, 0.9)
        XCTAssertNil(median.medianStop(step: 20, job: [(20, 9)], completed: Array(done.prefix(2)), objective: minLoss), "fewer than min_completed")
        XCTAssertEqual(median.explainMedian(step: 20, best: 0.95, median: 0.9, completed: 3, objective: minLoss),
                       "stopped at step 20: best val_loss 0.95 worse than the median 0.9 of the running averages of 3 completed jobs")
        XCTAssertEqual(median.recordedSteps(at: 20, recorded: [10]), [20], "the median rule records every eval")
    }
}
