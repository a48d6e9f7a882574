import Foundation

/// transformers' ForCausalLMLoss: labels are padded with one -100 on the right and shifted left,
/// so position t is scored on labels[t+1]; positions whose target is -100 are skipped and the
/// result is the mean over the rest of the whole batch (not per row).
public enum CrossEntropy {
    /// - Returns: mean loss (Double: logsumexp accumulates in Double) and the number of scored tokens.
    ///   With zero scored tokens the loss is NaN, as in torch.
    public static func mean(_ logits: Logits, labels: [Int32]) throws -> (loss: Double, tokens: Int) {
        let t = logits.length, v = logits.vocabSize
        guard labels.count == logits.batchSize * t else {
            throw EngineError.badInput(reason: "labels have \(labels.count) entries for \(logits.batchSize)x\(t) logits")
        }
        let scored = try scoredPositions(labels: labels, batchSize: logits.batchSize, length: t, vocab: v)
        var total = 0.0
        for item in scored {
            let b = item.position / t, pos = item.position % t
            total += tokenLoss(logits[b, pos], target: item.target)
        }
        return (scored.isEmpty ? .nan : total / Double(scored.count), scored.count)
    }

    /// Flat positions b*T + t whose target labels[b, t+1] is scored, with that target.
    static func scoredPositions(labels: [Int32], batchSize: Int, length t: Int, vocab v: Int) throws
        -> [(position: Int, target: Int32)] {
        var out: [(position: Int, target: Int32)] = []
        for b in 0..<batchSize {
            for pos in 0..<max(t - 1, 0) {
                let target = labels[b * t + pos + 1]
                if target == Batch.ignoreIndex { continue }
                guard target >= 0, Int(target) < v else {
                    throw EngineError.badInput(reason: "label \(target) at [\(b), \(pos + 1)] outside vocab \(v)")
                }
                out.append((b * t + pos, target))
            }
        }
        return out
    }

    /// logsumexp(row) - row[target], in Double.
    static func tokenLoss(_ row: ArraySlice<Float>, target: Int32) -> Double {
        let m = row.max() ?? 0
        var sum = 0.0
        for x in row { sum += Foundation.exp(Double(x - m)) }
        return Double(m) + Foundation.log(sum) - Double(row[row.startIndex + Int(target)])
    }
}
