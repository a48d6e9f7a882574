/// SplitMix64 (Steele, Lea and Flood 2014; the constants of Vigna's reference C code): the one
/// seeded generator of every Tuna module. Tiny, fully specified, the same stream on every
/// platform and Swift version (the standard library's generator and `random(in:)` promise
/// neither), and easy to mirror in Python: `sweep.seed: 7` draws the same random-search points,
/// a data set splits the same way (Tests/Python/reference/splitmix64.py), `tuna init-model` writes the
/// same bytes, everywhere.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A double in [0, 1) from the top 53 bits.
    public mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// A float in [0, 1) from the top 24 bits.
    public mutating func nextUnitFloat() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Uniform in `0 ..< bound` by rejection (no modulo bias), using only `next()`, so the
    /// result does not depend on the standard library's (unspecified) `random(in:)` algorithm.
    public mutating func below(_ bound: UInt64) -> UInt64 {
        if bound <= 1 { return 0 }
        let threshold = (0 &- bound) % bound  // 2^64 mod bound
        while true {
            let r = next()
            if r >= threshold { return r % bound }
        }
    }
}
