import Foundation
import XCTest
@testable import TunaEngine

/// The sampler's cuts against hand-worked distributions, and its draws against them.
final class SamplerTests: XCTestCase {
    func pick(_ logits: [Float], _ settings: SamplingSettings) -> [(token: Int32, p: Double)] {
        logits.withUnsafeBufferPointer { Sampler(settings: settings, sequence: 0).candidates($0) }
    }

    func testGreedyTakesTheFirstOfTiedMaxima() {
        let logits: [Float] = [1, 3, -2, 3, .nan, 0]
        XCTAssertEqual(logits.withUnsafeBufferPointer { Sampler.argmax($0) }, 1)
        var s = Sampler(settings: .greedy, sequence: 4)
        XCTAssertEqual(logits.withUnsafeBufferPointer { s.next($0) }, 1)
    }

    func testTemperatureScalesTheSoftmax() {
        // logits ln 1, ln 2, ln 4 at temperature 1: 1/7, 2/7, 4/7; at temperature 2: sqrt -> 1, 1.41, 2
        let logits: [Float] = [0, Float(log(2.0)), Float(log(4.0))]
        let t1 = pick(logits, SamplingSettings(temperature: 1))
        XCTAssertEqual(t1.map(\.token), [2, 1, 0])
        XCTAssertEqual(t1.map(\.p)[0], 4.0 / 7, accuracy: 1e-6)
        let t2 = pick(logits, SamplingSettings(temperature: 2))
        let z = 1 + 2.0.squareRoot() + 2
        XCTAssertEqual(t2.map(\.p)[0], 2 / z, accuracy: 1e-6)
        XCTAssertEqual(t2.map(\.p)[2], 1 / z, accuracy: 1e-6)
    }

    func testTopKKeepsTiesAtTheBoundaryAsTransformersDoes() {
        let logits: [Float] = [5, 1, 3, 3, 0]
        XCTAssertEqual(pick(logits, SamplingSettings(temperature: 1, topK: 2)).map(\.token), [0, 2, 3])
        XCTAssertEqual(pick(logits, SamplingSettings(temperature: 1, topK: 1)).map(\.token), [0])
        XCTAssertEqual(pick(logits, SamplingSettings(temperature: 1, topK: 9)).count, 5)
    }

    func testTopPKeepsTokensUntilTheirMassReachesP() {
        // probabilities 0.5, 0.25, 0.125, 0.125
        let logits: [Float] = [Float(log(0.125)), Float(log(0.5)), Float(log(0.125)), Float(log(0.25))]
        XCTAssertEqual(pick(logits, SamplingSettings(temperature: 1, topP: 0.5)).map(\.token), [1])
        XCTAssertEqual(pick(logits, SamplingSettings(temperature: 1, topP: 0.6)).map(\.token), [1, 3])
        let cut = pick(logits, SamplingSettings(temperature: 1, topP: 0.8))
        XCTAssertEqual(cut.map(\.token), [1, 3, 0])  // ties in probability: the lower id first
        XCTAssertEqual(cut.map(\.p)[0], 0.5 / 0.875, accuracy: 1e-6)  // renormalised
        XCTAssertEqual(pick(logits, SamplingSettings(temperature: 1, topP: 1)).count, 4)
    }

    func testDrawsFollowTheDistributionAndTheSeed() {
        let logits: [Float] = [0, Float(log(2.0)), Float(log(3.0)), -40]
        var counts = [0, 0, 0, 0]
        var s = Sampler(settings: SamplingSettings(temperature: 1, seed: 9), sequence: 0)
        let n = 60_000
        for _ in 0..<n { counts[Int(logits.withUnsafeBufferPointer { s.next($0) })] += 1 }
        for (i, want) in [1.0 / 6, 2.0 / 6, 3.0 / 6].enumerated() {
            let got = Double(counts[i]) / Double(n), sd = (want * (1 - want) / Double(n)).squareRoot()
            XCTAssertEqual(got, want, accuracy: 5 * sd, "token \(i)")
        }
        XCTAssertEqual(counts[3], 0)
        func run(_ seed: UInt64, _ stream: Int) -> [Int32] {
            var s = Sampler(settings: SamplingSettings(temperature: 1, seed: seed), sequence: stream)
            return (0..<64).map { _ in logits.withUnsafeBufferPointer { s.next($0) } }
        }
        XCTAssertEqual(run(1, 0), run(1, 0))
        XCTAssertNotEqual(run(1, 0), run(2, 0))
        XCTAssertNotEqual(run(1, 0), run(1, 1))
        // stream 1 is not stream 0 one draw later (SplitMix64 seeded i increments apart would be)
        XCTAssertNotEqual(Array(run(0, 0).dropFirst()), Array(run(0, 1).dropLast()))
    }

    func testSettingsOutOfRangeAreRefused() {
        XCTAssertNotNil(SamplingSettings(temperature: -1).problem)
        XCTAssertNotNil(SamplingSettings(temperature: .nan).problem)
        XCTAssertNotNil(SamplingSettings(topK: -1).problem)
        XCTAssertNotNil(SamplingSettings(topP: 0).problem)
        XCTAssertNotNil(SamplingSettings(topP: 1.5).problem)
        XCTAssertNil(SamplingSettings(temperature: 0.7, topK: 40, topP: 0.9).problem)
    }
}
