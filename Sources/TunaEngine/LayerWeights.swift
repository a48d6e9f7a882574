import Foundation

/// Attention weights of one decoder layer, fp32, in the checkpoint's own layouts.
/// C hidden, H query heads, KVH key/value heads, D head dim.
public struct AttentionWeights: Sendable {
    public var qWeight: [Float]   // [H*D, C]
    public var qBias: [Float]?    // [H*D]
    public var kWeight: [Float]   // [KVH*D, C]
    public var kBias: [Float]?    // [KVH*D]
    public var vWeight: [Float]   // [KVH*D, C]
    public var vBias: [Float]?    // [KVH*D]
    public var oWeight: [Float]   // [C, H*D]
    public var oBias: [Float]?    // [C]
    public var sinks: [Float]     // [H] learned per-head logit of the "attend to nothing" slot
}

/// Router and experts of one decoder layer. E experts, I intermediate size.
public struct MoEWeights: Sendable {
    public var routerWeight: [Float]  // [E, C]
    public var routerBias: [Float]    // [E]
    /// [E, C, 2I] (transformers' GptOssExperts layout): column 2j is gate j, column 2j+1 is up j.
    public var gateUp: [Float]
    public var gateUpBias: [Float]    // [E, 2I], same interleaving
    public var down: [Float]          // [E, I, C]
    public var downBias: [Float]      // [E, C]
}

public struct LayerWeights: Sendable {
    public var inputNorm: [Float]          // [C]
    public var postAttentionNorm: [Float]  // [C]
    public var attention: AttentionWeights
    public var moe: MoEWeights
}

/// Weights outside the decoder layers.
public struct EdgeWeights: Sendable {
    public var embedding: [Float]  // [V, C]
    public var finalNorm: [Float]  // [C]
    public var lmHead: [Float]     // [V, C] (untied in gpt-oss; the embedding when tie_word_embeddings)
}
