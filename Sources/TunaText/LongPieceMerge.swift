import Foundation

/// BPE merging for long pieces in O(n log n).
///
/// `BytePairEncoder`'s scan finds the lowest-ranked pair by looking at every pair after each
/// merge: O(n²), the fastest choice for ordinary pieces of a few dozen bytes, but a single
/// long piece (a 100 kB base64 blob, a minified line, a very long run of letters) would take
/// minutes. Past a threshold we switch to a min-heap of (rank, start offset) with lazy
/// deletion and a linked list of parts. Ordering the heap by (rank, start) picks the same
/// pair as the scan — lowest rank, leftmost on ties — so both give identical tokens (a test
/// checks this).
enum LongPieceMerge {
    /// Appends the tokens of `piece` to `out`.
    static func encode(_ piece: UnsafePointer<UInt8>, _ length: Int, view: RankTable.View, into out: inout [Int32]) {
        // Parts are identified by their start offset. `next[p]` is the start of the part after
        // `p` (== length for the last), `prev[p]` the one before. `pairRank[p]` is the rank of
        // part p merged with its successor, or .max (also for parts merged away).
        var next = Array(1...length)
        var prev = Array(-1..<(length - 1))
        var partRank = (0..<length).map { view.byteRanks[Int(piece[$0])] }
        var pairRank = [UInt32](repeating: .max, count: length)
        var heap = MinHeap()
        for i in 0..<(length - 1) {
            pairRank[i] = view.pairRanks[Int(piece[i]) << 8 | Int(piece[i + 1])]
            if pairRank[i] != .max { heap.push(UInt64(pairRank[i]) << 32 | UInt64(i)) }
        }

        func rank(_ from: Int, _ to: Int) -> UInt32 {
            let r = view.rank(piece + from, to - from)
            return r >= 0 ? UInt32(r) : .max
        }

        while let top = heap.pop() {
            let r = UInt32(top >> 32), p = Int(top & 0xFFFF_FFFF)
            // Stale entry: the part was merged away or its pair changed since the push.
            guard pairRank[p] == r else { continue }
            let gone = next[p]
            partRank[p] = r
            pairRank[gone] = .max
            next[p] = next[gone]
            if next[p] < length { prev[next[p]] = p }
            // The merged part's pair with its new successor...
            pairRank[p] = next[p] < length ? rank(p, next[next[p]]) : .max
            if pairRank[p] != .max { heap.push(UInt64(pairRank[p]) << 32 | UInt64(p)) }
            // ...and its predecessor's pair with it.
            let before = prev[p]
            if before >= 0 {
                pairRank[before] = rank(before, next[p])
                if pairRank[before] != .max { heap.push(UInt64(pairRank[before]) << 32 | UInt64(before)) }
            }
        }
        var p = 0
        while p < length {
            out.append(Int32(truncatingIfNeeded: partRank[p]))
            p = next[p]
        }
    }
}

/// A binary min-heap of UInt64 keys.
private struct MinHeap {
    private var items: [UInt64] = []

    mutating func push(_ value: UInt64) {
        items.append(value)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if items[parent] <= items[i] { break }
            items.swapAt(parent, i)
            i = parent
        }
    }

    mutating func pop() -> UInt64? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if items.isEmpty { return first }
        items[0] = last
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var smallest = i
            if l < items.count, items[l] < items[smallest] { smallest = l }
            if r < items.count, items[r] < items[smallest] { smallest = r }
            if smallest == i { break }
            items.swapAt(i, smallest)
            i = smallest
        }
        return first
    }
}
