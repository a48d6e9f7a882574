"""Model FLOPs per token of LoRA training on gpt-oss, for model FLOPs utilisation (MFU) next to
tokens/s (docs/performance.md, "Model FLOPs utilisation").

Counted as the work the training step needs, not the work an implementation does (PaLM's
convention): a recomputed forward (gradient checkpointing), padding and dequantization are not
counted, so a faster recipe cannot raise its MFU by doing more.

Per token, with the base model frozen:
  * matmuls of the base: forward 2·N, backward 2·N (input gradients only: the frozen weights get
    no gradient), where N is the parameters a token passes through: per layer q, k, v, o, the
    router and the top-k experts (gate_up and down), plus lm_head (not the embedding lookup);
  * attention scores: per layer forward 4·heads·head_dim·ctx (QKᵀ and PV), backward twice that,
    where ctx is the mean number of keys a query attends to: (T + 1) / 2 for causal full
    attention over T tokens, the mean of min(i + 1, W) for a sliding window W;
  * LoRA: 6 FLOPs per adapter parameter a token passes through (forward, input gradient, weight
    gradient); an expert's adapter is passed through by the tokens routed to it (top-k of E).
"""

H200_BF16_DENSE_TFLOPS = 989.4  # NVIDIA's H200 SXM datasheet, dense BF16 (1,979 with sparsity)


def active_parameters(cfg):
    """Base parameters one token passes through (biases and norms left out: O(hidden))."""
    h, i, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    q = cfg["num_attention_heads"] * cfg["head_dim"]
    kv = cfg["num_key_value_heads"] * cfg["head_dim"]
    attention = h * q + 2 * h * kv + q * h
    router = h * cfg["num_local_experts"]
    experts = cfg["num_experts_per_tok"] * (h * 2 * i + i * h)
    return layers * (attention + router + experts) + h * cfg["vocab_size"]


def mean_context(seq, window=None):
    """Mean keys per query over a causal row of `seq` tokens (within `window` if given)."""
    if window is None or window >= seq:
        return (seq + 1) / 2
    # positions 0..window-1 see i + 1 keys, the rest see window
    return (window * (window + 1) / 2 + (seq - window) * window) / seq


def attention_flops(cfg, seq, lengths=None):
    """Forward + backward FLOPs of the attention scores per token, summed over layers: rows of
    `seq` tokens, or documents of `lengths` tokens (packed or padded chats attend within their
    own chat), weighted by their tokens."""
    if lengths:
        return sum(n * attention_flops(cfg, n) for n in lengths) / sum(lengths)
    width = cfg["num_attention_heads"] * cfg["head_dim"]
    window = cfg.get("sliding_window")
    kinds = cfg.get("layer_types") or ["full_attention"] * cfg["num_hidden_layers"]
    ctx = sum(mean_context(seq, window if k == "sliding_attention" else None) for k in kinds)
    return 3 * 4 * width * ctx


def lora_flops(cfg, lora_parameters):
    """6 per adapter parameter a token passes through; `lora_parameters`: {name: numel}."""
    share = cfg["num_experts_per_tok"] / cfg["num_local_experts"]
    return 6 * sum(n * (share if ".experts." in name else 1.0) for name, n in lora_parameters.items())


def flops_per_token(cfg, seq, lora_parameters, lengths=None):
    return 4 * active_parameters(cfg) + attention_flops(cfg, seq, lengths) + lora_flops(cfg, lora_parameters)


def mfu(tokens_per_s, cfg, seq, lora_parameters, lengths=None, peak_tflops=H200_BF16_DENSE_TFLOPS):
    return tokens_per_s * flops_per_token(cfg, seq, lora_parameters, lengths) / (peak_tflops * 1e12)
