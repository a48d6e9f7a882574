import Foundation
import XCTest
@testable import TunaEngine

final class MXFP4Tests: XCTestCase {
    /// Bytes -> floats equal transformers' convert_moe_packed_tensors bit for bit, for random
    /// codes under every scale byte 0...255 (subnormal 2^-127, inf/NaN at 255 included).
    func testMatchesTransformersBitForBit() throws {
        let file = try SafeTensorsFile(path: try Fixture.url("mxfp4.safetensors").path)
        let blocksInfo = try file.info("blocks")
        XCTAssertEqual(blocksInfo.shape, [2, 8, 16, 16])
        let (e, rows, groups) = (blocksInfo.shape[0], blocksInfo.shape[1], blocksInfo.shape[2])
        let ours = try MXFP4.dequantize(blocks: try file.uint8s("blocks"), scales: try file.uint8s("scales"),
                                        experts: e, rows: rows, groups: groups)
        let theirs = try file.floats("dequantized")
        XCTAssertEqual(try file.info("dequantized").shape, [e, groups * 32, rows])
        XCTAssertEqual(ours.count, theirs.count)
        var mismatches = 0, nans = 0, infs = 0
        for (a, b) in zip(ours, theirs) {
            if a.isNaN || b.isNaN {
                nans += 1
                if !(a.isNaN && b.isNaN) { mismatches += 1 }
            } else if a.bitPattern != b.bitPattern {
                mismatches += 1
            }
            if b.isInfinite { infs += 1 }
        }
        print("MXFP4: \(ours.count) values, \(mismatches) bit mismatches (\(nans) NaN, \(infs) inf compared)")
        XCTAssertEqual(mismatches, 0)
        XCTAssertGreaterThan(infs, 0, "fixture should exercise overflow at scales 254, 255")
    }

    func testNibbleOrderAndScale() throws {
        // one expert, one row, one block: byte j holds codes (2j: low nibble, 2j+1: high nibble)
        var blocks = [UInt8](repeating: 0, count: 16)
        blocks[0] = 0x7A  // low 0xA = -1.0, high 0x7 = 6.0
        let scales: [UInt8] = [128]  // 2^1
        let out = try MXFP4.dequantize(blocks: blocks, scales: scales, experts: 1, rows: 1, groups: 1)
        XCTAssertEqual(out.count, 32)
        XCTAssertEqual(out[0], -2.0)
        XCTAssertEqual(out[1], 12.0)
        XCTAssertEqual(out[2], 0.0)
    }

    func testTransposedLayout() throws {
        // [E=1, out=2, G=1, 16]: row r's first code lands at [in=0, out=r]
        var blocks = [UInt8](repeating: 0, count: 32)
        blocks[0] = 0x02      // row 0, in 0 -> 1.0
        blocks[16] = 0x40     // row 1, in 1 -> 2.0
        let out = try MXFP4.dequantize(blocks: blocks, scales: [127, 127], experts: 1, rows: 2, groups: 1)
        XCTAssertEqual(out[0 * 2 + 0], 1.0)
        XCTAssertEqual(out[1 * 2 + 1], 2.0)
        XCTAssertEqual(out.filter { $0 != 0 }.count, 2)
    }

    func testRejectsWrongSizes() {
        assertEngineError(try MXFP4.dequantize(blocks: [0], scales: [0], experts: 1, rows: 1, groups: 1), mentions: ["MXFP4"])
    }
}
