import Foundation

/// Several examples concatenated into one fixed-length row, with what the engine needs to
/// keep them apart: per-token sequence ids (attention must not cross them) and position ids
/// that restart at 0 for each sequence.
public struct PackedRow: Sendable, Equatable {
    /// `rowLength` tokens; padding is `padToken`.
    public var tokens: [Int32]
    /// Loss mask; always false on padding.
    public var lossMask: [Bool]
    /// Position of each token within its own sequence (0-based); 0 on padding.
    public var positionIDs: [Int32]
    /// Which packed sequence (0, 1, ...) each token belongs to; -1 on padding.
    public var sequenceIDs: [Int32]
    /// Lengths of the packed sequences in order (cumulative sums give `cu_seqlens`).
    public var sequenceLengths: [Int]
    /// Indices (into the input array) of the examples packed here, in order.
    public var exampleIndices: [Int]
}

/// Packs examples into rows of `rowLength` tokens.
///
/// Algorithm: first-fit decreasing — examples are taken longest first (ties in input
/// order) and each goes into the first row with room, opening a new row when none has.
/// Deterministic, and typically within a few percent of the fewest rows possible. Within a
/// row, sequences appear in the order they were placed. An example longer than `rowLength`
/// is an error (truncate with `DatasetSpec.maxSeqLen` first); empty examples are skipped.
public func packExamples(_ examples: [RenderedExample], rowLength: Int, padToken: Int32) throws(TextError) -> [PackedRow] {
    guard rowLength > 0 else { throw .invalidSpec(reason: "pack row length must be positive, got \(rowLength)") }
    for (index, example) in examples.enumerated() where example.tokens.count > rowLength {
        throw .invalidSpec(reason: "example \(index) has \(example.tokens.count) tokens, more than the pack row length \(rowLength)")
    }
    let order = examples.indices
        .filter { !examples[$0].tokens.isEmpty }
        .sorted { (examples[$0].tokens.count, $1) > (examples[$1].tokens.count, $0) }

    var free = RoomTree(capacity: max(1, order.count), rowLength: rowLength)
    var members: [[Int]] = []
    for index in order {
        let length = examples[index].tokens.count
        let row = free.firstRow(withRoom: length)  // == members.count when a new row is needed
        if row == members.count { members.append([]) }
        members[row].append(index)
        free.use(length, ofRow: row)
    }

    return members.map { indices in
        var row = PackedRow(tokens: [], lossMask: [], positionIDs: [], sequenceIDs: [], sequenceLengths: [], exampleIndices: indices)
        row.tokens.reserveCapacity(rowLength)
        for (sequence, index) in indices.enumerated() {
            let example = examples[index]
            row.tokens += example.tokens
            row.lossMask += example.lossMask
            row.positionIDs += (0..<Int32(example.tokens.count))
            row.sequenceIDs += repeatElement(Int32(sequence), count: example.tokens.count)
            row.sequenceLengths.append(example.tokens.count)
        }
        let padding = rowLength - row.tokens.count
        row.tokens += repeatElement(padToken, count: padding)
        row.lossMask += repeatElement(false, count: padding)
        row.positionIDs += repeatElement(0, count: padding)
        row.sequenceIDs += repeatElement(-1, count: padding)
        return row
    }
}

/// Max-segment tree over the free room of rows, so "first row with at least `n` free
/// tokens" is O(log rows) instead of a scan. Rows not opened yet have the full row length,
/// which makes the first unopened row the answer when no open row fits.
private struct RoomTree {
    private var tree: [Int]
    private let leaves: Int

    init(capacity: Int, rowLength: Int) {
        var size = 1
        while size < capacity { size <<= 1 }
        leaves = size
        tree = [Int](repeating: rowLength, count: 2 * size)
    }

    /// Leftmost row with at least `length` free tokens (callers guarantee one exists, since
    /// there are as many rows as examples and each example fits an empty row).
    func firstRow(withRoom length: Int) -> Int {
        var node = 1
        while node < leaves {
            node = tree[2 * node] >= length ? 2 * node : 2 * node + 1
        }
        return node - leaves
    }

    mutating func use(_ length: Int, ofRow row: Int) {
        var node = row + leaves
        tree[node] -= length
        node /= 2
        while node >= 1 {
            tree[node] = max(tree[2 * node], tree[2 * node + 1])
            node /= 2
        }
    }
}
