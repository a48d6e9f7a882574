import Foundation
import TunaRandom

/// The deterministic train/validation split.
///
/// Algorithm (reproducible in any language; Tests/Python/reference/splitmix64.py has a Python copy):
/// 1. `n` = number of kept examples, in file order; `k = round(n * valFraction)` (halves
///    round away from zero), clamped to `0 ... n`.
/// 2. Fisher–Yates shuffle of `[0, 1, ..., n-1]` with SplitMix64(seed): for `i` from `n-1`
///    down to 1, swap positions `i` and `below(i + 1)`.
/// 3. The first `k` shuffled indices are the validation set; both sets keep file order.
///    (Shuffling the training order per epoch is the trainer's job.)
public enum DatasetSplit {
    /// Indices of the validation examples, ascending.
    public static func validationIndices(count n: Int, valFraction: Double, seed: UInt64) -> [Int] {
        guard n > 0 else { return [] }
        let k = min(n, max(0, Int((Double(n) * valFraction).rounded())))
        var order = Array(0..<n)
        var rng = SplitMix64(seed: seed)
        var i = n - 1
        while i > 0 {
            let j = Int(rng.below(UInt64(i + 1)))
            order.swapAt(i, j)
            i -= 1
        }
        return order.prefix(k).sorted()
    }
}
