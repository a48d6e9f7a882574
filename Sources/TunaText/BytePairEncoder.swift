import Foundation

/// Byte-level BPE over one pre-tokenized piece, with tiktoken's rank semantics: repeatedly
/// merge the adjacent pair whose concatenated bytes have the lowest rank (leftmost on ties)
/// until no adjacent pair is in the vocabulary. With tiktoken-style vocabularies the ranks
/// *are* the merge priorities, so no separate merges list is needed.
///
/// Holds scratch buffers reused across pieces so the hot loop does not allocate; one
/// encoder serves one `encode` call (it is not shared between threads).
struct BytePairEncoder {
    /// Part boundaries: part `k` is `piece[starts[k] ..< starts[k + 1]]`.
    private var starts: [Int] = []
    /// `pairRanks[k]`: rank of part `k` merged with part `k + 1`, or `.max`.
    private var pairRanks: [UInt32] = []
    /// `partRanks[k]`: rank of part `k` itself (every part is a token at all times).
    private var partRanks: [UInt32] = []
    /// Pieces longer than this many bytes go to `LongPieceMerge` (O(n log n)); shorter ones
    /// use the O(n²) scan, which is faster when n is small. Tests lower it to compare both.
    var longPieceThreshold = 256

    init(longPieceThreshold: Int = 256) {
        self.longPieceThreshold = longPieceThreshold
    }

    /// Appends the tokens of `piece` (`length` bytes, at least 1) to `out`.
    mutating func encode(
        _ piece: UnsafePointer<UInt8>, _ length: Int, view: RankTable.View, into out: inout [Int32]
    ) {
        if length == 1 {
            // Loaders guarantee all 256 bytes are tokens.
            out.append(Int32(truncatingIfNeeded: view.byteRanks[Int(piece[0])]))
            return
        }
        // Most pieces are whole tokens (common words with their leading space): one lookup.
        let whole = view.rank(piece, length)
        if whole >= 0 {
            out.append(whole)
            return
        }
        if length > longPieceThreshold {
            LongPieceMerge.encode(piece, length, view: view, into: &out)
            return
        }
        let parts = merge(piece, length, view: view)
        for k in 0..<parts { out.append(Int32(truncatingIfNeeded: partRanks[k])) }
    }

    /// Runs the merge loop and returns the number of final parts, whose ranks are
    /// `partRanks[0 ..< parts]`.
    private mutating func merge(_ piece: UnsafePointer<UInt8>, _ length: Int, view: RankTable.View) -> Int {
        if starts.count < length + 1 {
            starts = [Int](repeating: 0, count: 2 * length + 1)
            pairRanks = [UInt32](repeating: .max, count: 2 * length + 1)
            partRanks = [UInt32](repeating: .max, count: 2 * length + 1)
        }
        return starts.withUnsafeMutableBufferPointer { s in
            pairRanks.withUnsafeMutableBufferPointer { r in
                partRanks.withUnsafeMutableBufferPointer { p in
                    // Start from single bytes; the first round of pairs comes from the
                    // two-byte table instead of the hash.
                    for i in 0..<length {
                        s[i] = i
                        p[i] = view.byteRanks[Int(piece[i])]
                    }
                    s[length] = length
                    for i in 0..<(length - 1) {
                        r[i] = view.pairRanks[Int(piece[i]) << 8 | Int(piece[i + 1])]
                    }
                    r[length - 1] = .max

                    var parts = length
                    while parts > 1 {
                        // Leftmost lowest-ranked pair.
                        var best = UInt32.max
                        var at = 0
                        for k in 0..<(parts - 1) where r[k] < best {
                            best = r[k]
                            at = k
                        }
                        if best == .max { break }
                        // Merge parts `at` and `at + 1`: the merged part's rank is the pair's.
                        p[at] = best
                        var k = at + 1
                        while k < parts {
                            s[k] = s[k + 1]
                            r[k] = r[k + 1]
                            p[k] = p[k + 1]
                            k += 1
                        }
                        parts -= 1
                        r[parts - 1] = .max
                        // Only the pairs touching the merged part change.
                        if at + 1 < parts { r[at] = BytePairEncoder.rank(piece, s[at], s[at + 2], view) }
                        if at > 0 { r[at - 1] = BytePairEncoder.rank(piece, s[at - 1], s[at + 1], view) }
                    }
                    return parts
                }
            }
        }
    }

    @inline(__always)
    private static func rank(_ piece: UnsafePointer<UInt8>, _ from: Int, _ to: Int, _ view: RankTable.View) -> UInt32 {
        let r = view.rank(piece + from, to - from)
        return r >= 0 ? UInt32(r) : .max
    }
}
