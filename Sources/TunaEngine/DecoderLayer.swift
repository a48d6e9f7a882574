import Foundation

/// Everything one decoder layer's forward keeps for a backward pass.
public struct LayerActivations: Sendable {
    public var input: [Float]          // [N, C] residual stream entering the layer
    public var inputRstd: [Float]      // [N]    input_layernorm's 1/rms
    public var attention: AttentionActivations
    public var afterAttention: [Float] // [N, C] residual stream after attention
    public var postRstd: [Float]       // [N]    post_attention_layernorm's 1/rms
    public var moe: MoEActivations
}

/// GptOssDecoderLayer: x + attn(norm(x)), then + moe(norm(.)).
enum DecoderLayer {
    static func forward(_ x: [Float], weights w: LayerWeights, layerIndex: Int, config: GptOssConfig, rope: Rope,
                        batch: Batch) -> (out: [Float], saved: LayerActivations) {
        let n = batch.batchSize * batch.length
        let window = config.isSliding(layer: layerIndex) ? config.slidingWindow : nil
        let (normed, rstd1) = RMSNorm.forward(x, weight: w.inputNorm, rows: n, eps: config.eps)      // [N, C]
        let (attnOut, attnSaved) = Attention.forward(normed, weights: w.attention, config: config, rope: rope,
                                                     batch: batch, window: window)                  // [N, C]
        var h = x
        for i in 0..<h.count { h[i] += attnOut[i] }
        let (normed2, rstd2) = RMSNorm.forward(h, weight: w.postAttentionNorm, rows: n, eps: config.eps)
        let (moeOut, moeSaved) = MoE.forward(normed2, weights: w.moe, config: config, tokens: n)    // [N, C]
        var out = h
        for i in 0..<out.count { out[i] += moeOut[i] }
        return (out, LayerActivations(input: x, inputRstd: rstd1, attention: attnSaved, afterAttention: h,
                                      postRstd: rstd2, moe: moeSaved))
    }
}
