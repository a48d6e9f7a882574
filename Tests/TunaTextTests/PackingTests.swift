import Foundation
import XCTest
@testable import TunaText
import TunaRandom

final class PackingTests: XCTestCase {
    func example(_ length: Int, base: Int32) -> RenderedExample {
        RenderedExample(tokens: (0..<Int32(length)).map { base + $0 }, lossMask: (0..<length).map { $0 % 2 == 1 })
    }

    func testFirstFitDecreasingLayout() throws {
        let examples = [example(3, base: 100), example(6, base: 200), example(2, base: 300), example(5, base: 400), example(0, base: 0)]
        let rows = try packExamples(examples, rowLength: 8, padToken: -7)
        // Longest first: 6 → row 0; 5 → row 1; 3 → row 1 (row 0 has 2 left); 2 → row 0.
        XCTAssertEqual(rows.map(\.exampleIndices), [[1, 2], [3, 0]])
        let r0 = rows[0]
        XCTAssertEqual(r0.tokens, [200, 201, 202, 203, 204, 205, 300, 301])
        XCTAssertEqual(r0.positionIDs, [0, 1, 2, 3, 4, 5, 0, 1])
        XCTAssertEqual(r0.sequenceIDs, [0, 0, 0, 0, 0, 0, 1, 1])
        XCTAssertEqual(r0.sequenceLengths, [6, 2])
        let r1 = rows[1]
        XCTAssertEqual(r1.tokens, [400, 401, 402, 403, 404, 100, 101, 102])
        XCTAssertEqual(r1.lossMask, [false, true, false, true, false, false, true, false])
    }

    func testPaddingAndInvariants() throws {
        var rng = SplitMix64(seed: 5)
        let examples = (0..<200).map { i in example(Int(rng.below(60)) + 1, base: Int32(i * 1000)) }
        let rows = try packExamples(examples, rowLength: 64, padToken: 199999)
        // Every example lands exactly once, intact.
        XCTAssertEqual(rows.flatMap(\.exampleIndices).sorted(), Array(0..<200))
        for row in rows {
            XCTAssertEqual(row.tokens.count, 64)
            XCTAssertEqual(row.lossMask.count, 64)
            XCTAssertEqual(row.positionIDs.count, 64)
            XCTAssertEqual(row.sequenceIDs.count, 64)
            var offset = 0
            for (sequence, index) in row.exampleIndices.enumerated() {
                let e = examples[index]
                XCTAssertEqual(Array(row.tokens[offset..<offset + e.tokens.count]), e.tokens)
                XCTAssertEqual(Array(row.lossMask[offset..<offset + e.tokens.count]), e.lossMask)
                XCTAssertTrue(row.sequenceIDs[offset..<offset + e.tokens.count].allSatisfy { $0 == Int32(sequence) })
                XCTAssertEqual(row.positionIDs[offset], 0)
                offset += e.tokens.count
            }
            XCTAssertEqual(row.sequenceLengths.reduce(0, +), offset)
            XCTAssertTrue(row.tokens[offset...].allSatisfy { $0 == 199999 })
            XCTAssertTrue(row.sequenceIDs[offset...].allSatisfy { $0 == -1 })
            XCTAssertFalse(row.lossMask[offset...].contains(true))
        }
        // First-fit decreasing is near-optimal here: at most 10% more rows than the bound.
        let lowerBound = (examples.map(\.tokens.count).reduce(0, +) + 63) / 64
        XCTAssertLessThanOrEqual(rows.count, lowerBound + lowerBound / 10 + 1)
    }

    func testRejectsOverlongExamplesAndBadLength() {
        XCTAssertThrowsError(try packExamples([example(9, base: 0)], rowLength: 8, padToken: 0)) { error in
            XCTAssertEqual(error as? TextError, .invalidSpec(reason: "example 0 has 9 tokens, more than the pack row length 8"))
        }
        XCTAssertThrowsError(try packExamples([], rowLength: 0, padToken: 0))
        XCTAssertEqual(try packExamples([], rowLength: 8, padToken: 0), [])
    }
}
