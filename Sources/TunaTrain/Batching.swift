import Foundation
import TunaCore
import TunaEngine
import TunaText
import TunaRandom

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

    /// Rows of several sequences each (no attention between them: one segment per sequence,
    /// positions restarting at 0), right-padded to the longest row.
    static func packed(_ rows: [[RenderedExample]]) throws -> Batch {
        let t = rows.map { $0.reduce(0) { $0 + $1.tokens.count } }.max() ?? 0
        var tokens: [[Int32]] = [], mask: [[Int32]] = [], pos: [[Int32]] = [], seg: [[Int32]] = [], lab: [[Int32]] = []
        for row in rows {
            var tk: [Int32] = [], m: [Int32] = [], p: [Int32] = [], sg: [Int32] = [], l: [Int32] = []
            for (s, e) in row.enumerated() {
                tk += e.tokens; l += labels(e.tokens, e.lossMask)
                m += repeatElement(1, count: e.tokens.count); p += (0..<Int32(e.tokens.count))
                sg += repeatElement(Int32(s), count: e.tokens.count)
            }
            let pad = t - tk.count
            tk += repeatElement(0, count: pad); m += repeatElement(0, count: pad); p += (0..<Int32(pad))
            sg += repeatElement(Int32(row.count), count: pad); l += repeatElement(Batch.ignoreIndex, count: pad)
            tokens.append(tk); mask.append(m); pos.append(p); seg.append(sg); lab.append(l)
        }
        return try Batch(tokens: tokens, attentionMask: mask, positionIds: pos, segmentIds: seg, labels: lab)
    }

    /// The micro-batches of one epoch as example indices (micro-batch → rows → examples in
    /// row order): examples shuffled by (seed, epoch), then either one per row, `batchSize`
    /// rows at a time, or first packed into rows of `rowLength` tokens (rows shuffled the same
    /// way). Deterministic, so a resumed run, and the torch trainer (`tuna prepare`), see
    /// exactly the same batches.
    static func epochPlan(_ examples: [RenderedExample], epoch: Int, seed: Int, batchSize: Int, packing: Bool,
                          rowLength: Int) throws -> [[[Int]]] {
        var rng = SplitMix64(seed: UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(epoch))
        let order = Array(examples.indices).shuffled(using: &rng).filter { examples[$0].tokens.count >= 2 }
        let rows: [[Int]]
        if packing {
            let packed = try packExamples(order.map { examples[$0] }, rowLength: rowLength, padToken: 0).shuffled(using: &rng)
            rows = packed.map { $0.exampleIndices.map { order[$0] } }
        } else {
            rows = order.map { [$0] }
        }
        return stride(from: 0, to: rows.count, by: batchSize).map { Array(rows[$0..<min($0 + batchSize, rows.count)]) }
    }

    /// The batch for one micro-batch of a plan.
    static func batch(_ rows: [[Int]], _ examples: [RenderedExample], packing: Bool) throws -> Batch {
        packing ? try packed(rows.map { $0.map { examples[$0] } }) : try padded(rows.map { examples[$0[0]] })
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
