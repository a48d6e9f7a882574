import Foundation
import TunaCore
import TunaEngine
import TunaText

/// Turns rendered examples into the engine's batches: labels are the tokens where the loss
/// mask is on and -100 elsewhere (the engine shifts them, like transformers).
enum Batching {
    static func labels(_ tokens: [Int32], _ mask: [Bool]) -> [Int32] {
        zip(tokens, mask).map { $1 ? $0 : Batch.ignoreIndex }
    }

    /// One row per example, right-padded to the longest (padding is masked out of attention).
    static func padded(_ examples: [RenderedExample], padToken: Int32 = 0) throws -> Batch {
        let t = examples.map(\.tokens.count).max() ?? 0
        func pad(_ row: [Int32], _ fill: Int32) -> [Int32] { row + [Int32](repeating: fill, count: t - row.count) }
        return try Batch(tokens: examples.map { pad($0.tokens, padToken) },
                         attentionMask: examples.map { pad([Int32](repeating: 1, count: $0.tokens.count), 0) },
                         labels: examples.map { pad(labels($0.tokens, $0.lossMask), Batch.ignoreIndex) })
    }

    /// Packed rows (several sequences per row, no attention between them), trimmed to the
    /// longest row's content.
    static func packed(_ rows: [PackedRow]) throws -> Batch {
        let t = rows.map { $0.sequenceLengths.reduce(0, +) }.max() ?? 0
        func cut<T>(_ a: [T]) -> [T] { Array(a.prefix(t)) }
        return try Batch(tokens: rows.map { cut($0.tokens) },
                         attentionMask: rows.map { r in cut((0..<r.tokens.count).map { Int32($0 < r.sequenceLengths.reduce(0, +) ? 1 : 0) }) },
                         positionIds: rows.map { cut($0.positionIDs) }, segmentIds: rows.map { cut($0.sequenceIDs) },
                         labels: rows.map { cut(labels($0.tokens, $0.lossMask)) })
    }

    /// The micro-batches of one epoch: examples shuffled by (seed, epoch), then either grouped
    /// `batchSize` at a time or packed into rows of `rowLength` tokens first (rows shuffled the
    /// same way). Deterministic: a resumed run rebuilds exactly the same epoch.
    static func epoch(_ examples: [RenderedExample], epoch: Int, seed: Int, batchSize: Int, packing: Bool,
                      rowLength: Int) throws -> [Batch] {
        var rng = SplitMix64(seed: UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(epoch))
        let order = Array(examples.indices).shuffled(using: &rng)
        let shuffled = order.map { examples[$0] }.filter { $0.tokens.count >= 2 }
        if packing {
            let rows = try packExamples(shuffled, rowLength: rowLength, padToken: 0).shuffled(using: &rng)
            return try stride(from: 0, to: rows.count, by: batchSize).map { try packed(Array(rows[$0..<min($0 + batchSize, rows.count)])) }
        }
        return try stride(from: 0, to: shuffled.count, by: batchSize).map {
            try padded(Array(shuffled[$0..<min($0 + batchSize, shuffled.count)]))
        }
    }

    /// Validation batches in file order, `batchSize` examples each.
    static func validation(_ examples: [RenderedExample], batchSize: Int) throws -> [Batch] {
        let kept = examples.filter { $0.tokens.count >= 2 }
        return try stride(from: 0, to: kept.count, by: batchSize).map { try padded(Array(kept[$0..<min($0 + batchSize, kept.count)])) }
    }
}

extension Batch {
    /// Non-padding tokens.
    var realTokens: Int { attentionMask.reduce(0) { $0 + Int($1) } }
}
