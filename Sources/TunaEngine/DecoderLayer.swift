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
                        batch: Batch, lora: LayerLoRA = .empty, expertMask: [Bool]? = nil) -> (out: [Float], saved: LayerActivations) {
        let n = batch.batchSize * batch.length
        let window = config.isSliding(layer: layerIndex) ? config.slidingWindow : nil
        let (normed, rstd1) = RMSNorm.forward(x, weight: w.inputNorm, rows: n, eps: config.eps)      // [N, C]
        let (attnOut, attnSaved) = Attention.forward(normed, weights: w.attention, config: config, rope: rope,
                                                     batch: batch, window: window, lora: lora)      // [N, C]
        var h = x
        for i in 0..<h.count { h[i] += attnOut[i] }
        let (normed2, rstd2) = RMSNorm.forward(h, weight: w.postAttentionNorm, rows: n, eps: config.eps)
        let (moeOut, moeSaved) = MoE.forward(normed2, weights: w.moe, config: config, tokens: n, lora: lora,
                                             expertMask: expertMask)  // [N, C]
        var out = h
        for i in 0..<out.count { out[i] += moeOut[i] }
        return (out, LayerActivations(input: x, inputRstd: rstd1, attention: attnSaved, afterAttention: h,
                                      postRstd: rstd2, moe: moeSaved))
    }
}

extension DecoderLayer {
    /// out = h + moe(norm2(h)), h = x + attn(norm1(x)):
    /// dh = dOut + norm2'(moe'(dOut)), dx = dh + norm1'(attn'(dh)). Returns dx (nil when
    /// `needInput` is false) and the layer's LoRA gradients by module / expert parameter.
    static func backward(_ dOut: [Float], saved: LayerActivations, weights w: LayerWeights, layerIndex: Int,
                         config: GptOssConfig, rope: Rope, batch: Batch, lora: LayerLoRA, needInput: Bool)
        -> (dx: [Float]?, grads: [String: (dA: [Float], dB: [Float])]) {
        let n = batch.batchSize * batch.length
        let window = config.isSliding(layer: layerIndex) ? config.slidingWindow : nil
        let (dMoEIn, expertGrads) = MoE.backward(dOut, saved: saved.moe, weights: w.moe, config: config, tokens: n, lora: lora)
        var dh = RMSNorm.backward(dMoEIn, x: saved.afterAttention, rstd: saved.postRstd, weight: w.postAttentionNorm, rows: n)
        for i in 0..<dh.count { dh[i] += dOut[i] }
        // the lowest trained layer without attention LoRA needs nothing from attention's backward
        if !needInput && lora.attention.isEmpty { return (nil, expertGrads) }
        let (dAttnIn, attentionGrads) = Attention.backward(dh, saved: saved.attention, weights: w.attention, config: config,
                                                           rope: rope, batch: batch, window: window, lora: lora,
                                                           needInput: needInput)
        var grads = attentionGrads
        for (k, v) in expertGrads { grads[k] = v }
        guard let dAttnIn else { return (nil, grads) }
        var dx = RMSNorm.backward(dAttnIn, x: saved.input, rstd: saved.inputRstd, weight: w.inputNorm, rows: n)
        for i in 0..<dx.count { dx[i] += dh[i] }
        return (dx, grads)
    }
}
