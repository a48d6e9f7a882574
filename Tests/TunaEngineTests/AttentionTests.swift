import Foundation
import XCTest
@testable import TunaEngine

/// The blocked sgemm attention against a plain scalar transcription of transformers'
/// eager_attention_forward (+ the mask rules), on shapes where T spans several query blocks.
final class AttentionTests: XCTestCase {
    struct Rng {
        var state: UInt64
        mutating func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000 - 1000) / 500
        }
    }

    /// Scalar reference: for each query, logits over allowed keys plus the sink, softmax, drop sink.
    func naive(q: [Float], k: [Float], v: [Float], sinks: [Float], h: Int, kvh: Int, d: Int, batch: Batch, window: Int?) -> [Float] {
        let t = batch.length
        var out = [Float](repeating: 0, count: q.count)
        for b in 0..<batch.batchSize { for head in 0..<h {
            let kvHead = head / (h / kvh)
            for i in 0..<t {
                var logits: [(Int, Double)] = []
                for j in 0..<t where batch.allowed(row: b, query: i, key: j, window: window) {
                    var dot = 0.0
                    for x in 0..<d { dot += Double(q[((b * t + i) * h + head) * d + x]) * Double(k[((b * t + j) * kvh + kvHead) * d + x]) }
                    logits.append((j, dot / Double(d).squareRoot()))
                }
                let m = max(Double(sinks[head]), logits.map(\.1).max() ?? -.infinity)
                let denom = exp(Double(sinks[head]) - m) + logits.reduce(0) { $0 + exp($1.1 - m) }
                for x in 0..<d {
                    var acc = 0.0
                    for (j, l) in logits { acc += exp(l - m) / denom * Double(v[((b * t + j) * kvh + kvHead) * d + x]) }
                    out[((b * t + i) * h + head) * d + x] = Float(acc)
                }
            }
        } }
        return out
    }

    func testBlockedMatchesNaive() throws {
        let (h, kvh, d, t) = (4, 2, 8, 37)
        var rng = Rng(state: 42)
        // row 0: full length; row 1: padded to 20; row 2: three packed sequences
        let ones = [Int32](repeating: 1, count: t)
        var padded = ones
        for i in 20..<t { padded[i] = 0 }
        let plain: [Int32] = (0..<t).map { Int32($0) }
        // three packed sequences of 10, 15 and 12 tokens
        var packedPositions = [Int32](repeating: 0, count: t)
        for i in 0..<t {
            let start = i < 10 ? 0 : (i < 25 ? 10 : 25)
            packedPositions[i] = Int32(i - start)
        }
        let batch = try Batch(tokens: [[Int32]](repeating: [Int32](repeating: 0, count: t), count: 3),
                              attentionMask: [ones, padded, ones], positionIds: [plain, plain, packedPositions])
        XCTAssertEqual(Set(batch.segments[(2 * t)...]), [0, 1, 2])
        let n = 3 * t
        let q = (0..<(n * h * d)).map { _ in rng.next() }
        let k = (0..<(n * kvh * d)).map { _ in rng.next() }
        let v = (0..<(n * kvh * d)).map { _ in rng.next() }
        let sinks = (0..<h).map { _ in rng.next() }
        for window in [nil, 5] as [Int?] {
            let want = naive(q: q, k: k, v: v, sinks: sinks, h: h, kvh: kvh, d: d, batch: batch, window: window)
            for block in [1, 4, 16, 128] {
                let got = Attention.attend(q: q, k: k, v: v, sinks: sinks, heads: h, kvHeads: kvh, headDim: d,
                                           batch: batch, window: window, block: block)
                let err = maxRelativeError(got, want)
                print("attention window \(window.map(String.init) ?? "none") block \(block): max rel err \(String(format: "%.2e", err))")
                XCTAssertLessThan(err, 1e-5)
            }
        }
    }
}
