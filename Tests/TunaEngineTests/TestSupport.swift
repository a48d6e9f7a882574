import Foundation
import XCTest
@testable import TunaEngine

/// Locations of the committed fixtures (made by Tests/Python/reference/engine_goldens.py).
enum Fixture {
    static func url(_ name: String) throws -> URL {
        guard let base = Bundle.module.resourceURL?.appendingPathComponent("Fixtures") else {
            throw XCTSkip("test bundle has no Fixtures resource")
        }
        return base.appendingPathComponent(name)
    }
}

/// max|a - b| / max|b|: error relative to the reference's scale, so tiny reference entries
/// (near-zero logits) cannot blow the figure up while a real mismatch anywhere still shows.
func maxRelativeError(_ a: [Float], _ b: [Float]) -> Double {
    guard a.count == b.count else {
        XCTFail("compared arrays differ in length: \(a.count) vs \(b.count)")
        return .infinity
    }
    var diff = 0.0, scale = 0.0
    for i in 0..<a.count {
        diff = max(diff, abs(Double(a[i]) - Double(b[i])))
        scale = max(scale, abs(Double(b[i])))
    }
    if diff.isNaN || a.contains(where: { $0.isNaN }) { return .infinity }
    return scale == 0 ? diff : diff / scale
}

/// One recorded case of reference.safetensors: int64 inputs, fp32 logits [B, T, V], loss.
struct ReferenceCase {
    let batch: Batch
    let logits: [Float]
    let loss: Double
    let shape: [Int]

    init(file: SafeTensorsFile, name: String) throws {
        let idsInfo = try file.info("\(name).input_ids")
        let (b, t) = (idsInfo.shape[0], idsInfo.shape[1])
        func rows(_ key: String) throws -> [[Int32]]? {
            guard file.tensors["\(name).\(key)"] != nil else { return nil }
            let flat = try file.integers("\(name).\(key)").map { Int32($0) }
            return (0..<b).map { Array(flat[($0 * t)..<(($0 + 1) * t)]) }
        }
        // Packed rows carry only position ids; segments are derived from them the way
        // transformers' find_packed_sequence_indices would.
        batch = try Batch(tokens: try rows("input_ids") ?? [], attentionMask: try rows("attention_mask"),
                          positionIds: try rows("position_ids"), labels: try rows("labels"))
        logits = try file.floats("\(name).logits")
        shape = try file.info("\(name).logits").shape
        loss = Double(try file.floats("\(name).loss")[0])
    }
}

/// Asserts that `body` throws an EngineError whose description mentions every string in `mentions`.
func assertEngineError<T>(_ body: @autoclosure () throws -> T, mentions: [String], file: StaticString = #filePath,
                          line: UInt = #line) {
    do {
        _ = try body()
        XCTFail("expected an error mentioning \(mentions)", file: file, line: line)
    } catch let error as EngineError {
        for m in mentions {
            XCTAssertTrue(error.description.contains(m), "'\(error)' does not mention '\(m)'", file: file, line: line)
        }
    } catch {
        XCTFail("expected EngineError, got \(error)", file: file, line: line)
    }
}
