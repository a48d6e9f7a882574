import XCTest
@testable import TunaEngine
import TunaCore
import TunaText

/// The schedules against values computed by hand from transformers' lambdas.
final class ScheduleTests: XCTestCase {
    func testWarmupThenLinearDecay() throws {
        let s = try LearningRateSchedule(kind: "linear", peak: 1e-3, warmupSteps: 2, totalSteps: 10)
        XCTAssertEqual(s.rate(atStep: 0), 0)
        XCTAssertEqual(s.rate(atStep: 1), 5e-4, accuracy: 1e-15)
        XCTAssertEqual(s.rate(atStep: 2), 1e-3, accuracy: 1e-15)
        XCTAssertEqual(s.rate(atStep: 6), 1e-3 * 4 / 8, accuracy: 1e-15)
        XCTAssertEqual(s.rate(atStep: 10), 0, accuracy: 1e-15)
    }

    func testCosineWithMinLRFloorsAtTheRatio() throws {
        let s = try LearningRateSchedule(kind: "cosine_with_min_lr", peak: 2, warmupSteps: 0, totalSteps: 4, minLRRatio: 0.1)
        XCTAssertEqual(s.rate(atStep: 0), 2, accuracy: 1e-12)
        XCTAssertEqual(s.rate(atStep: 2), 2 * (0.5 * 0.9 + 0.1), accuracy: 1e-12)
        XCTAssertEqual(s.rate(atStep: 4), 0.2, accuracy: 1e-12)
        let c = try LearningRateSchedule(kind: "cosine", peak: 2, warmupSteps: 0, totalSteps: 4)
        XCTAssertEqual(c.rate(atStep: 4), 0, accuracy: 1e-12)
        XCTAssertEqual(c.rate(atStep: 1), 2 * 0.5 * (1 + cos(Double.pi / 4)), accuracy: 1e-12)
    }

    func testUnknownSchedulerIsAClearError() {
        XCTAssertThrowsError(try LearningRateSchedule(kind: "polynomial", peak: 1, warmupSteps: 0, totalSteps: 1)) { e in
            XCTAssertTrue("\(e)".contains("train.scheduler: polynomial"), "\(e)")
        }
    }

    func testWarmupStepsRoundUpLikeTransformers() {
        XCTAssertEqual(LearningRateSchedule.warmupSteps(ratio: 0.03, totalSteps: 100), 3)
        XCTAssertEqual(LearningRateSchedule.warmupSteps(ratio: 0.03, totalSteps: 101), 4)
        XCTAssertEqual(LearningRateSchedule.warmupSteps(ratio: 0, totalSteps: 101), 0)
    }
}

/// The job spec's enumerations (TunaCore, the contract) and the engine's own (TunaText,
/// TunaEngine) are the same sets: a value the validator accepts is one the trainer can run.
final class SpecEnumsTests: XCTestCase {
    func testContractEnumsAreTheEnginesEnums() {
        XCTAssertEqual(JobSpec.Dataset.Format.allCases.map(\.rawValue), DatasetSpec.Format.allCases.map(\.rawValue))
        XCTAssertEqual(JobSpec.Dataset.Template.allCases.map(\.rawValue), DatasetSpec.Template.allCases.map(\.rawValue))
        XCTAssertEqual(JobSpec.Train.Scheduler.allCases.map(\.rawValue), LearningRateSchedule.Kind.allCases.map(\.rawValue))
        XCTAssertEqual(JobSpec.Prune.Score.allCases.map(\.rawValue), ExpertProfile.Score.allCases.map(\.rawValue))
    }
}
