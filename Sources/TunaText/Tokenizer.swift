import Foundation

/// Which special tokens `Tokenizer.encode(_:allowedSpecial:)` recognises in the text.
/// Special names that are not allowed are encoded as ordinary text, like tiktoken's
/// `encode_ordinary` (never an error: data sets legitimately contain strings like `<|end|>`).
public enum AllowedSpecial: Sendable, Equatable {
    case none
    case all
    case only(Set<String>)
}

/// The o200k / o200k_harmony byte-level BPE tokenizer, in pure Swift.
///
/// Produces the same ids as tiktoken's `o200k_harmony` (the gpt-oss tokenizer); the tests
/// check this against tiktoken itself on a multilingual corpus. Immutable and `Sendable`:
/// share one instance across threads.
public struct Tokenizer: Sendable {
    let ranks: RankTable
    /// Special token bytes ⇄ id, in the same flat table type as the ordinary ranks.
    let specials: RankTable
    private let specialIDs: [String: Int32]
    private let specialNames: [Int32: String]
    /// Distinct byte lengths of special names, longest first (the matcher tries each).
    private let specialLengths: [Int]

    /// Builds a tokenizer from a ranks table and special tokens (name → id).
    init(ranks: RankTable, specialTokens: [String: Int32]) throws(RankTableError) {
        self.ranks = ranks
        self.specialIDs = specialTokens
        var names: [Int32: String] = [:]
        var entries: [(bytes: [UInt8], rank: Int)] = []
        for (name, id) in specialTokens.sorted(by: { $0.key < $1.key }) {
            if names[id] == nil || HarmonySpecialTokens.preferredNames[id] == name { names[id] = name }
            entries.append((Array(name.utf8), Int(id)))
        }
        self.specialNames = names
        // Several names may share an id (200018), so the specials table maps bytes → id
        // without requiring unique ids: index them by position and translate back.
        var byPosition: [(bytes: [UInt8], rank: Int)] = []
        for (index, entry) in entries.enumerated() { byPosition.append((entry.bytes, index)) }
        self.specials = try RankTable(entries: byPosition)
        self.specialPositionToID = entries.map { Int32($0.rank) }
        self.specialLengths = Array(Set(entries.map(\.bytes.count))).sorted(by: >)
        var firstBytes = [Bool](repeating: false, count: 256)
        for entry in entries { if let b = entry.bytes.first { firstBytes[Int(b)] = true } }
        self.specialFirstByte = firstBytes
        // Build the process-wide scalar class table now, so the first `encode` call is not
        // the one that pays for it.
        _ = ScalarClass.table.count
    }

    /// `specials` stores positions in the sorted special list; this maps them to ids.
    private let specialPositionToID: [Int32]

    /// Number of ids (ordinary + special) this tokenizer can produce: max id + 1.
    public var vocabularySize: Int {
        max(ranks.rankLimit, Int((specialIDs.values.max() ?? -1) + 1))
    }

    /// Id of a special token such as `<|start|>`, or nil.
    public func specialTokenID(_ name: String) -> Int32? { specialIDs[name] }

    /// The name of special token `id` (the preferred one when several names share it).
    public func specialName(_ id: Int32) -> String? { specialNames[id] }

    /// Whether `id` is a special token.
    public func isSpecial(_ id: Int32) -> Bool { specialNames[id] != nil }

    /// Encodes `text` with special-token names treated as plain text (tiktoken's
    /// `encode_ordinary`).
    public func encode(_ text: String) -> [Int32] {
        encode(text, allowedSpecial: .none)
    }

    /// Encodes `text`, turning occurrences of allowed special-token names into their ids.
    public func encode(_ text: String, allowedSpecial: AllowedSpecial) -> [Int32] {
        var text = text
        // Native Swift strings are contiguous UTF-8 already; bridged ones are copied once.
        text.makeContiguousUTF8()
        if let ids = text.utf8.withContiguousStorageIfAvailable({ encode(utf8: $0, allowedSpecial: allowedSpecial) }) {
            return ids
        }
        return Array(text.utf8).withUnsafeBufferPointer { encode(utf8: $0, allowedSpecial: allowedSpecial) }
    }

    /// Ordinary encoding with a chosen long-piece threshold (tests compare both merge paths).
    func encode(_ text: String, longPieceThreshold: Int) -> [Int32] {
        Array(text.utf8).withUnsafeBufferPointer {
            encode(utf8: $0, allowedSpecial: .none, longPieceThreshold: longPieceThreshold)
        }
    }

    /// Encodes valid UTF-8 bytes (the splitter relies on validity, which `String` guarantees).
    private func encode(utf8: UnsafeBufferPointer<UInt8>, allowedSpecial: AllowedSpecial,
                        longPieceThreshold: Int = 256) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(utf8.count / 3 + 1)
        var bpe = BytePairEncoder(longPieceThreshold: longPieceThreshold)
        ScalarClass.table.withUnsafeBufferPointer { cls in
            ranks.withView { view in
                var segmentStart = 0
                if allowedSpecial != .none {
                    specials.withView { specialView in
                        var i = 0
                        while i < utf8.count {
                            if let (id, length) = matchSpecial(utf8, at: i, specialView, allowedSpecial) {
                                encodeOrdinary(utf8, segmentStart, i, cls, view, &bpe, &out)
                                out.append(id)
                                i += length
                                segmentStart = i
                            } else {
                                i += 1
                            }
                        }
                    }
                }
                encodeOrdinary(utf8, segmentStart, utf8.count, cls, view, &bpe, &out)
            }
        }
        return out
    }

    /// Pre-tokenizes `utf8[from ..< to]` and BPE-encodes each piece. The splitter sees the
    /// segment as the whole text, as tiktoken does between special tokens.
    private func encodeOrdinary(
        _ utf8: UnsafeBufferPointer<UInt8>, _ from: Int, _ to: Int,
        _ classes: UnsafeBufferPointer<UInt8>, _ view: RankTable.View,
        _ bpe: inout BytePairEncoder, _ out: inout [Int32]
    ) {
        guard to > from, let base = utf8.baseAddress else { return }
        let segment = UnsafeBufferPointer(start: base + from, count: to - from)
        let splitter = O200kSplitter(text: segment, classes: classes)
        var start = 0
        while start < segment.count {
            let end = splitter.pieceEnd(from: start)
            bpe.encode(base + from + start, end - start, view: view, into: &out)
            start = end
        }
    }

    /// The allowed special token starting at byte `i`, if any (longest name wins).
    @inline(__always)
    private func matchSpecial(
        _ utf8: UnsafeBufferPointer<UInt8>, at i: Int, _ view: RankTable.View, _ allowed: AllowedSpecial
    ) -> (Int32, Int)? {
        // All o200k special names start with "<|"; checking the first byte against the
        // known first bytes keeps the common path to a single comparison.
        guard let base = utf8.baseAddress, specialFirstByte[Int(utf8[i])] else { return nil }
        for length in specialLengths where i + length <= utf8.count {
            let position = view.rank(base + i, length)
            if position < 0 { continue }
            let id = specialPositionToID[Int(position)]
            switch allowed {
            case .none: return nil
            case .all: return (id, length)
            case let .only(names):
                let name = String(decoding: UnsafeBufferPointer(start: base + i, count: length), as: UTF8.self)
                if names.contains(name) { return (id, length) }
            }
        }
        return nil
    }

    /// `specialFirstByte[b]`: some special name starts with byte `b`.
    private let specialFirstByte: [Bool]
}
