import Foundation

/// SplitMix64 (Steele, Lea & Flood 2014; the constants of Vigna's reference C code). Chosen
/// for the split because it is tiny, fully specified, and gives the same stream on every
/// platform — unlike `SystemRandomNumberGenerator` or Foundation APIs. Internal on purpose:
/// TunaCore exports its own `SplitMix64`, and two public ones would be ambiguous in `tuna`.
struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `0 ..< bound` by rejection (no modulo bias), using only `next()`, so the
    /// result does not depend on the standard library's (unspecified) `random(in:)` algorithm.
    mutating func below(_ bound: UInt64) -> UInt64 {
        if bound <= 1 { return 0 }
        let threshold = (0 &- bound) % bound  // 2^64 mod bound
        while true {
            let r = next()
            if r >= threshold { return r % bound }
        }
    }
}

/// The deterministic train/validation split.
///
/// Algorithm (reproducible in any language; scripts/text/make_goldens.py has a Python copy):
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
