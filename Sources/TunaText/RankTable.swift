import Foundation

/// The mergeable ranks of a byte-level BPE vocabulary: token bytes ⇄ rank (= token id).
///
/// Both loaders (`.tiktoken` and HF `tokenizer.json`) build this same table, so everything
/// downstream is independent of the file format. Storage is flat on purpose: all token bytes
/// live in one array, and lookup is an open-addressing hash table of ranks keyed by the bytes,
/// hashed 8 bytes at a time. Swift's `Dictionary<[UInt8], Int>` would allocate an array per
/// probe and hash with SipHash, which is several times slower in the BPE inner loop.
struct RankTable: Sendable {
    /// Concatenated bytes of all tokens, in rank order.
    private(set) var bytes: [UInt8] = []
    /// `offsets[r] ..< offsets[r + 1]` are the bytes of rank `r`; an empty range means the
    /// rank is unused (a sparse vocabulary).
    private(set) var offsets: [Int32] = [0]
    /// Hash slots: `tag << 32 | rank`, or `RankTable.emptySlot`. The tag (24 hash bits and
    /// the key length) rejects almost every non-matching probe without touching the bytes.
    /// Capacity is a power of two, at least twice the entry count.
    private(set) var slots: [UInt64] = []
    /// Rank of each single byte (`UInt32.max` if absent): the BPE's starting parts.
    private(set) var byteRanks: [UInt32] = []
    /// Rank of every two-byte token, indexed by `first << 8 | second` (`UInt32.max` if
    /// absent): the BPE's first round of pair lookups, without hashing.
    private(set) var pairRanks: [UInt32] = []
    /// Number of ranks actually present.
    private(set) var count = 0

    /// Largest rank + 1 (the decode table's size).
    var rankLimit: Int { offsets.count - 1 }

    /// Builds the table. `entries` are (token bytes, rank); duplicate bytes or ranks are a
    /// corrupt vocabulary and reported through `duplicate` so the loader can name the line.
    init(entries: [(bytes: [UInt8], rank: Int)]) throws(RankTableError) {
        var maxRank = -1
        for entry in entries {
            guard entry.rank >= 0, entry.rank < 1 << 24 else { throw .rankOutOfRange(entry.rank) }
            guard !entry.bytes.isEmpty else { throw .emptyToken(rank: entry.rank) }
            maxRank = max(maxRank, entry.rank)
        }
        // Lay the bytes out by rank so decoding is a plain index.
        var byRank = [Int](repeating: -1, count: maxRank + 1)
        for (index, entry) in entries.enumerated() {
            guard byRank[entry.rank] == -1 else { throw .duplicateRank(entry.rank) }
            byRank[entry.rank] = index
        }
        var flat: [UInt8] = []
        flat.reserveCapacity(entries.reduce(0) { $0 + $1.bytes.count })
        var offs: [Int32] = [0]
        offs.reserveCapacity(maxRank + 2)
        for rank in 0...max(maxRank, 0) where maxRank >= 0 {
            let index = byRank[rank]
            if index >= 0 { flat.append(contentsOf: entries[index].bytes) }
            offs.append(Int32(flat.count))
        }
        bytes = flat
        offsets = offs
        count = entries.count

        var capacity = 16
        while capacity < entries.count * 2 { capacity <<= 1 }
        var table = [UInt64](repeating: RankTable.emptySlot, count: capacity)
        let mask = capacity - 1
        // The closure reports a duplicate instead of throwing: `withUnsafeBufferPointer`
        // only rethrows untyped errors.
        let duplicate: RankTableError? = flat.withUnsafeBufferPointer { flatBuf in
            guard let flatBase = flatBuf.baseAddress else { return nil }  // no entries at all
            for entry in entries {
                let start = Int(offs[entry.rank])
                let length = entry.bytes.count
                let base = flatBase + start
                let h = RankTable.hash(base, length)
                var slot = Int(truncatingIfNeeded: h) & mask
                while table[slot] != RankTable.emptySlot {
                    let other = Int(table[slot] & 0xFFFF_FFFF)
                    let oStart = Int(offs[other]), oLength = Int(offs[other + 1]) - oStart
                    if oLength == length, memcmp(base, flatBase + oStart, length) == 0 {
                        return RankTableError.duplicateBytes(rank: entry.rank, other: other)
                    }
                    slot = (slot + 1) & mask
                }
                table[slot] = RankTable.tag(h, length) << 32 | UInt64(entry.rank)
            }
            return nil
        }
        if let duplicate { throw duplicate }
        slots = table
        byteRanks = [UInt32](repeating: .max, count: 256)
        pairRanks = [UInt32](repeating: .max, count: 65536)
        for entry in entries where entry.bytes.count <= 2 {
            if entry.bytes.count == 1 {
                byteRanks[Int(entry.bytes[0])] = UInt32(entry.rank)
            } else {
                pairRanks[Int(entry.bytes[0]) << 8 | Int(entry.bytes[1])] = UInt32(entry.rank)
            }
        }
    }

    /// Bytes of `rank`, or nil when the rank is not in the vocabulary.
    func tokenBytes(_ rank: Int) -> ArraySlice<UInt8>? {
        guard rank >= 0, rank < rankLimit else { return nil }
        let start = Int(offsets[rank]), end = Int(offsets[rank + 1])
        return start == end ? nil : bytes[start..<end]
    }

    /// Rank of a byte string (convenience for tests and loaders; the encoder uses `View`).
    func rank(of token: [UInt8]) -> Int32? {
        withView { view in
            token.withUnsafeBufferPointer { buf in
                guard let base = buf.baseAddress else { return nil }
                let r = view.rank(base, buf.count)
                return r >= 0 ? r : nil
            }
        }
    }

    /// Runs `body` with raw pointers into the table, for the encoder's inner loop.
    func withView<R>(_ body: (View) throws -> R) rethrows -> R {
        try bytes.withUnsafeBufferPointer { b in
            try offsets.withUnsafeBufferPointer { o in
                try slots.withUnsafeBufferPointer { s in
                    try byteRanks.withUnsafeBufferPointer { r1 in
                        try pairRanks.withUnsafeBufferPointer { r2 in
                            try body(View(bytes: b, offsets: o, slots: s, mask: s.count - 1, byteRanks: r1, pairRanks: r2))
                        }
                    }
                }
            }
        }
    }

    /// Pointer view of the table; only valid inside `withView`.
    struct View {
        let bytes: UnsafeBufferPointer<UInt8>
        let offsets: UnsafeBufferPointer<Int32>
        let slots: UnsafeBufferPointer<UInt64>
        let mask: Int
        let byteRanks: UnsafeBufferPointer<UInt32>
        let pairRanks: UnsafeBufferPointer<UInt32>

        /// Rank of `length` bytes at `key`, or -1.
        @inline(__always)
        func rank(_ key: UnsafePointer<UInt8>, _ length: Int) -> Int32 {
            guard let base = bytes.baseAddress else { return -1 }
            let h = RankTable.hash(key, length)
            let tag = RankTable.tag(h, length)
            var slot = Int(truncatingIfNeeded: h) & mask
            while true {
                let entry = slots[slot]
                if entry == RankTable.emptySlot { return -1 }
                if entry >> 32 == tag {
                    let r = Int(entry & 0xFFFF_FFFF)
                    let start = Int(offsets[r])
                    if Int(offsets[r + 1]) - start == length, RankTable.equal(key, base + start, length) {
                        return Int32(r)
                    }
                }
                slot = (slot + 1) & mask
            }
        }
    }

    @inline(__always) static var emptySlot: UInt64 { .max }

    /// 24 bits of the hash (not the ones that pick the slot) and the length, low byte.
    @inline(__always)
    static func tag(_ hash: UInt64, _ length: Int) -> UInt64 {
        (hash >> 40) << 8 | UInt64(length & 0xFF)
    }

    /// Byte equality, 8 bytes at a time: keys are short, and a `memcmp` call costs more
    /// than the comparison itself.
    @inline(__always)
    static func equal(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
        var i = 0
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        while i + 8 <= n {
            if ra.loadUnaligned(fromByteOffset: i, as: UInt64.self) != rb.loadUnaligned(fromByteOffset: i, as: UInt64.self) {
                return false
            }
            i += 8
        }
        while i < n {
            if a[i] != b[i] { return false }
            i += 1
        }
        return true
    }

    /// A fast non-cryptographic hash over bytes (8 at a time, splitmix-style finalizer).
    /// The vocabulary is trusted input, so hash flooding is not a concern here.
    @inline(__always)
    static func hash(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 &* UInt64(n &+ 1)
        var i = 0
        let raw = UnsafeRawPointer(p)
        while i + 8 <= n {
            h = (h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 31
            i += 8
        }
        if i < n {
            var w: UInt64 = 0
            var shift: UInt64 = 0
            while i < n {
                w |= UInt64(p[i]) << shift
                shift += 8
                i += 1
            }
            h = (h ^ w) &* 0x94D0_49BB_1331_11EB
        }
        return h ^ (h >> 29)
    }
}

/// Why a vocabulary could not become a `RankTable`; loaders wrap it with file and line.
enum RankTableError: Error {
    case rankOutOfRange(Int)
    case emptyToken(rank: Int)
    case duplicateRank(Int)
    case duplicateBytes(rank: Int, other: Int)

    var reason: String {
        switch self {
        case let .rankOutOfRange(r): return "rank \(r) is out of range (0 ..< 2^24)"
        case let .emptyToken(r): return "rank \(r) has an empty token"
        case let .duplicateRank(r): return "rank \(r) appears twice"
        case let .duplicateBytes(r, o): return "rank \(r) has the same bytes as rank \(o)"
        }
    }
}
