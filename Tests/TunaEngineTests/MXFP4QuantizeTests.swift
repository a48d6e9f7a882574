import Foundation
import XCTest
@testable import TunaEngine
import TunaRandom

/// `MXFP4.quantize` against `MXFP4.dequantize` (itself bit-identical to transformers'):
/// exact on representable values, within half an FP4 step elsewhere, canonical bytes round-trip.
final class MXFP4QuantizeTests: XCTestCase {
    /// [E, in, out] dequantized -> [E, out, in], the layout `quantize` takes.
    func transpose(_ x: [Float], experts: Int, inFeatures: Int, outFeatures: Int) -> [Float] {
        var t = x
        let per = inFeatures * outFeatures
        for e in 0..<experts { for i in 0..<inFeatures { for o in 0..<outFeatures {
            t[e * per + o * inFeatures + i] = x[e * per + i * outFeatures + o]
        } } }
        return t
    }

    func roundTrip(_ x: [Float], experts: Int, rows: Int, columns: Int) throws -> (y: [Float], scales: [UInt8]) {
        let q = try MXFP4.quantize(x, experts: experts, rows: rows, columns: columns)
        XCTAssertEqual(q.blocks.count, experts * rows * columns / 2)
        XCTAssertEqual(q.scales.count, experts * rows * columns / 32)
        let y = try MXFP4.dequantize(blocks: q.blocks, scales: q.scales, experts: experts, rows: rows, groups: columns / 32)
        return (transpose(y, experts: experts, inFeatures: columns, outFeatures: rows), q.scales)
    }

    /// Blocks of random E2M1 values times a random power of two (including ones whose largest
    /// code is small, so the quantizer picks a smaller scale than the one used to build them):
    /// dequantize(quantize(x)) == x bit for bit.
    func testRepresentableValuesAreExact() throws {
        var rng = SplitMix64(seed: 1)
        let (e, rows, cols) = (3, 5, 64)
        var x = [Float](repeating: 0, count: e * rows * cols)
        for b in 0..<(x.count / 32) {
            let exponent = Int(rng.next() % 252) - 127  // 2^-127 ... 2^124: subnormal results included
            let maxCode = Int(rng.next() % 8)            // blocks whose largest code is 0 ... 7
            for k in 0..<32 {
                let code = Int(rng.next() % UInt64(maxCode + 1)) | (rng.next() % 2 == 0 ? 0 : 8)
                x[b * 32 + k] = Float(Double(MXFP4.fp4Values[code]) * Double(sign: .plus, exponent: exponent, significand: 1))
            }
        }
        x[7] = -0.0  // signed zeros survive
        let (y, _) = try roundTrip(x, experts: e, rows: rows, columns: cols)
        for k in 0..<x.count { XCTAssertEqual(y[k].bitPattern, x[k].bitPattern, "element \(k): \(x[k]) -> \(y[k])") }
    }

    /// Arbitrary values: every element within half the FP4 step at its magnitude (x 2^s), and
    /// s is the smallest scale that fits the block's max (|x|/2^s <= 6, > 6 at s - 1).
    func testErrorWithinHalfAStep() throws {
        var rng = SplitMix64(seed: 2)
        let (e, rows, cols) = (2, 16, 96)
        var x = (0..<(e * rows * cols)).map { _ in rng.normal() * 0.05 }
        for k in stride(from: 0, to: x.count, by: 97) { x[k] *= 50 }       // outliers in some blocks
        for k in 0..<32 { x[32 + k] = Float(k) * 6 / 31 }                    // a ramp through every interval
        for k in 0..<32 { x[64 + k] = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 6][k % 8] }  // exact ties at scale 1
        let (y, scales) = try roundTrip(x, experts: e, rows: rows, columns: cols)
        for b in 0..<scales.count {
            let scale = Double(sign: .plus, exponent: Int(scales[b]) - 127, significand: 1)
            let amax = (0..<32).map { Double(abs(x[b * 32 + $0])) }.max()!
            XCTAssertLessThanOrEqual(amax / scale, 6, "block \(b) does not fit")
            if scales[b] > 0 { XCTAssertGreaterThan(amax / (scale / 2), 6, "block \(b): a smaller scale fits") }
            for k in (b * 32)..<(b * 32 + 32) {
                let m = Double(abs(x[k])) / scale
                let halfStep = m <= 2 ? 0.25 : m <= 4 ? 0.5 : 1.0
                XCTAssertLessThanOrEqual(abs(Double(y[k]) - Double(x[k])), halfStep * scale, "element \(k): \(x[k]) -> \(y[k])")
            }
        }
        // Ties go to the even code: 0.25 -> 0, 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4, 6 -> 6.
        XCTAssertEqual(scales[2], 127)
        XCTAssertEqual(Array(y[64..<72]), [0, 1, 1, 2, 2, 4, 4, 6])
    }

    /// Canonical bytes — each block's largest code is +-4 or +-6, the scale the rule would pick
    /// (bytes 0 ... 252, beyond which dequantize overflows fp32) — survive
    /// quantize(dequantize(bytes)) unchanged; so do all-zero blocks with scale byte 0.
    func testCanonicalBytesRoundTrip() throws {
        var rng = SplitMix64(seed: 3)
        let (e, rows, groups) = (2, 8, 4)
        var blocks = [UInt8](repeating: 0, count: e * rows * groups * 16)
        var scales = [UInt8](repeating: 0, count: e * rows * groups)
        for b in 0..<scales.count {
            if b == 5 { continue }  // all zero, scale 0
            scales[b] = UInt8(b * 37 % 253)
            var codes = (0..<32).map { _ in UInt8(rng.next() % 16) }
            codes[Int(rng.next() % 32)] = [6, 7, 14, 15][Int(rng.next() % 4)]  // the max: +-4 or +-6
            for j in 0..<16 { blocks[b * 16 + j] = codes[2 * j] | codes[2 * j + 1] << 4 }
        }
        let x = try MXFP4.dequantize(blocks: blocks, scales: scales, experts: e, rows: rows, groups: groups)
        let q = try MXFP4.quantize(inputMajor: x, experts: e, inFeatures: groups * 32, outFeatures: rows)
        XCTAssertEqual(q.scales, scales)
        XCTAssertEqual(q.blocks, blocks)
    }

    func testRejectsBadInput() {
        assertEngineError(try MXFP4.quantize([Float](repeating: 0, count: 16), experts: 1, rows: 1, columns: 16), mentions: ["divisible by 32"])
        var x = [Float](repeating: 0, count: 32)
        x[3] = .nan
        assertEngineError(try MXFP4.quantize(x, experts: 1, rows: 1, columns: 32), mentions: ["weight 3"])
    }
}
