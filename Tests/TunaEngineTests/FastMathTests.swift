import Foundation
import XCTest
@testable import TunaEngine

final class FastMathTests: XCTestCase {
    /// Vector exp against glibc expf over the whole finite range, in ulps of expf's result.
    func testExpWithinTwoUlp() {
        var worstUlp: Float = 0
        var x: Float = -87.3
        var xs: [Float] = []
        while x < 88.7 { xs.append(x); x += 0.0137 }
        xs += [0, -0.0, 1e-8, -1e-8, 0.5, -0.5]
        var out = [Float](repeating: 0, count: xs.count)
        xs.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { d in
            if let sb = s.baseAddress, let db = d.baseAddress { FastMath.exp(sb, db, count: xs.count) }
        } }
        for (x, got) in zip(xs, out) {
            let want = Foundation.exp(x)
            let ulp = abs(got - want) / want.ulp
            worstUlp = max(worstUlp, ulp)
        }
        print("FastMath.exp: \(xs.count) points, worst \(worstUlp) ulp vs expf")
        XCTAssertLessThanOrEqual(worstUlp, 2)
    }

    /// Out of range it saturates (documented), NaN stays NaN, 0 gives exactly 1.
    func testExpEdges() {
        let xs: [Float] = [-1000, -88, 89, 1000, .infinity, -.infinity, .nan, 0, -0.0]
        var out = [Float](repeating: 0, count: xs.count)
        xs.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { d in
            if let sb = s.baseAddress, let db = d.baseAddress { FastMath.exp(sb, db, count: xs.count) }
        } }
        for i in [0, 1, 5] { XCTAssertLessThan(out[i], 1.2e-38, "x = \(xs[i])"); XCTAssertGreaterThanOrEqual(out[i], 0) }
        for i in [2, 3, 4] { XCTAssertGreaterThan(out[i], 3.3e38, "x = \(xs[i])"); XCTAssertTrue(out[i].isFinite) }
        XCTAssertTrue(out[6].isNaN)
        XCTAssertEqual(out[7], 1)
        XCTAssertEqual(out[8], 1)
    }
}
