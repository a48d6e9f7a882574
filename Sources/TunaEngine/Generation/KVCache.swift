import Foundation

/// Post-RoPE keys and values of one sequence, per layer: what a decode step attends to.
///
/// Full-attention layers keep every token. Sliding layers keep only what a query can still
/// see: a query at position i sees keys i - W + 1 ... i (transformers' `kv_idx > q_idx -
/// sliding_window`; `DynamicSlidingWindowLayer` keeps the W - 1 before the next token). A
/// decode step appends its own key first, so at least the last W stay; the oldest entries
/// are dropped in chunks (past 2W + 64), so appending stays amortised O(1).
struct KVCache {
    let width: Int          // KVH * D floats per token
    let windows: [Int?]     // per layer: W for sliding layers, nil for full attention
    private(set) var keys: [[Float]]    // per layer [tokens, KVH*D]
    private(set) var values: [[Float]]  // per layer [tokens, KVH*D]

    init(config: GptOssConfig) {
        width = config.kvHeads * config.resolvedHeadDim
        windows = (0..<config.numHiddenLayers).map { config.isSliding(layer: $0) ? config.slidingWindow : nil }
        keys = Array(repeating: [], count: config.numHiddenLayers)
        values = keys
    }

    func count(layer: Int) -> Int { keys[layer].count / width }

    /// Appends `tokens` rows of k and v (each [tokens, KVH*D], starting at `offset` floats).
    mutating func append(layer: Int, k: [Float], v: [Float], offset: Int, tokens: Int) {
        keys[layer].append(contentsOf: k[offset..<(offset + tokens * width)])
        values[layer].append(contentsOf: v[offset..<(offset + tokens * width)])
        if let w = windows[layer], count(layer: layer) > 2 * w + 64 {
            // keep W: the newest token may be the query about to attend (decode appends first)
            let drop = (count(layer: layer) - w) * width
            keys[layer].removeFirst(drop)
            values[layer].removeFirst(drop)
        }
    }

    /// The keys the newest token of `layer` may see: (first float offset, token count).
    func visible(layer: Int) -> (offset: Int, tokens: Int) {
        let n = count(layer: layer)
        let seen = windows[layer].map { min(n, $0) } ?? n
        return ((n - seen) * width, seen)
    }
}
