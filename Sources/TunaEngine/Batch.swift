import Foundation

/// A rectangular batch of token rows, B rows of T tokens, flattened row-major ([B*T]).
///  - attentionMask: 1 = real token, 0 = padding (right padding); padding keys are never attended.
///  - positions: RoPE positions; default 0..<T in every row, like transformers.
///  - segments: packing. Tokens attend only to earlier tokens with the same segment id.
///  - labels: next-token targets as transformers takes them (unshifted; -100 = ignored).
public struct Batch: Sendable {
    public let batchSize: Int            // B
    public let length: Int               // T
    public var tokens: [Int32]           // [B*T]
    public var attentionMask: [Int32]    // [B*T]
    public var positions: [Int32]        // [B*T]
    public var segments: [Int32]         // [B*T]
    public var labels: [Int32]?          // [B*T]

    public static let ignoreIndex: Int32 = -100

    /// - Parameters: all per-row arrays must be rectangular [B][T].
    ///   When `positionIds` are given without `segmentIds`, a new segment starts wherever the
    ///   position does not advance by exactly 1 (transformers' `find_packed_sequence_indices`).
    public init(tokens: [[Int32]], attentionMask: [[Int32]]? = nil, positionIds: [[Int32]]? = nil,
                segmentIds: [[Int32]]? = nil, labels: [[Int32]]? = nil) throws {
        guard let first = tokens.first, !first.isEmpty else { throw EngineError.badInput(reason: "empty batch") }
        let b = tokens.count, t = first.count
        func flat(_ rows: [[Int32]]?, _ what: String) throws -> [Int32]? {
            guard let rows else { return nil }
            guard rows.count == b, rows.allSatisfy({ $0.count == t }) else {
                throw EngineError.badInput(reason: "\(what) must be [\(b)][\(t)] like the tokens")
            }
            return rows.flatMap { $0 }
        }
        guard tokens.allSatisfy({ $0.count == t }) else { throw EngineError.badInput(reason: "ragged token rows; pad them") }
        batchSize = b
        length = t
        self.tokens = tokens.flatMap { $0 }
        self.attentionMask = try flat(attentionMask, "attention mask") ?? [Int32](repeating: 1, count: b * t)
        let positions = try flat(positionIds, "position ids") ?? (0..<b).flatMap { _ in (0..<Int32(t)).map { $0 } }
        self.positions = positions
        if let segs = try flat(segmentIds, "segment ids") {
            segments = segs
        } else if positionIds != nil {
            segments = Batch.segments(fromPositions: positions, length: t)
        } else {
            segments = [Int32](repeating: 0, count: b * t)
        }
        self.labels = try flat(labels, "labels")
    }

    /// Packs several sequences per row back to back (positions restart, one segment each) and
    /// right-pads rows to the longest. Labels are the tokens themselves, with the first token of
    /// every sequence and all padding ignored, so no sequence is trained to predict the next.
    public static func packed(_ rows: [[[Int32]]], padToken: Int32 = 0) throws -> Batch {
        let t = rows.map { $0.reduce(0) { $0 + $1.count } }.max() ?? 0
        var tokens: [[Int32]] = [], mask: [[Int32]] = [], pos: [[Int32]] = [], seg: [[Int32]] = [], labels: [[Int32]] = []
        for row in rows {
            var tk: [Int32] = [], m: [Int32] = [], p: [Int32] = [], s: [Int32] = [], l: [Int32] = []
            for (i, seq) in row.enumerated() {
                for (j, tok) in seq.enumerated() {
                    tk.append(tok); m.append(1); p.append(Int32(j)); s.append(Int32(i))
                    l.append(j == 0 ? ignoreIndex : tok)
                }
            }
            let pad = t - tk.count
            tk += Array(repeating: padToken, count: pad); m += Array(repeating: 0, count: pad)
            p += (0..<pad).map { Int32($0) }; s += Array(repeating: Int32(row.count), count: pad)
            l += Array(repeating: ignoreIndex, count: pad)
            tokens.append(tk); mask.append(m); pos.append(p); seg.append(s); labels.append(l)
        }
        return try Batch(tokens: tokens, attentionMask: mask, positionIds: pos, segmentIds: seg, labels: labels)
    }

    /// Segment ids per row: increments wherever position[t] != position[t-1] + 1.
    public static func segments(fromPositions positions: [Int32], length t: Int) -> [Int32] {
        var out = [Int32](repeating: 0, count: positions.count)
        for start in stride(from: 0, to: positions.count, by: t) {
            var s: Int32 = 0
            for i in start..<(start + t) {
                if i > start, positions[i] != positions[i - 1] &+ 1 { s += 1 }
                out[i] = s
            }
        }
        return out
    }

    /// May query token i attend to key token j (both indices inside one row)?
    @inline(__always)
    func allowed(row: Int, query i: Int, key j: Int, window: Int?) -> Bool {
        let base = row * length
        if j > i { return false }
        if let w = window, j <= i - w { return false }  // transformers: kv_idx > q_idx - sliding_window
        return attentionMask[base + j] != 0 && segments[base + j] == segments[base + i]
    }
}
