"""Benchmarks/gpu/flops.py, the model FLOPs behind the GPU benchmark's MFU column: the
parameters a token passes through counted from transformers' own gpt-oss-20b module shapes
(and against OpenAI's published 3.6B active parameters), the mean attention context by brute
force, and expert adapters scaled by the share of tokens routed to an expert."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Benchmarks", "gpu"))
import flops  # noqa: E402
from bench_lora import GPT_OSS_20B  # noqa: E402


def test_active_parameters_are_transformers_module_shapes():
    from transformers import GptOssConfig, GptOssForCausalLM
    cfg = dict(GPT_OSS_20B)
    config = GptOssConfig(**{k: v for k, v in cfg.items() if k != "quantization_config"})
    with torch.device("meta"):
        model = GptOssForCausalLM(config)
    share = cfg["num_experts_per_tok"] / cfg["num_local_experts"]
    counted = 0.0
    for name, p in model.named_parameters():
        if name.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight", "router.weight", "lm_head.weight")):
            counted += p.numel()
        elif name.endswith(("experts.gate_up_proj", "experts.down_proj")):
            counted += p.numel() * share
    assert flops.active_parameters(cfg) == counted
    assert abs(counted / 3.6e9 - 1) < 0.01, counted  # the model card: 3.6B active parameters


def test_mean_context_by_brute_force():
    for seq, window in [(1, None), (7, None), (2048, None), (2048, 128), (100, 128), (129, 128), (5, 1)]:
        want = sum(min(i + 1, window or seq) for i in range(seq)) / seq
        assert abs(flops.mean_context(seq, window) - want) < 1e-9, (seq, window)


def test_attention_and_lora_terms():
    cfg = dict(GPT_OSS_20B)
    width = cfg["num_attention_heads"] * cfg["head_dim"]
    # 12 sliding (W=128) and 12 full layers at T=2048, forward + backward = 3x forward's 4·width·ctx
    want = 3 * 4 * width * (12 * flops.mean_context(2048, 128) + 12 * (2048 + 1) / 2)
    assert abs(flops.attention_flops(cfg, 2048) - want) < 1e-6 * want
    lora = {"model.layers.0.self_attn.q_proj.lora_A.weight": 1000, "model.layers.7.mlp.experts.lora_A": 3200}
    assert flops.lora_flops(cfg, lora) == 6 * (1000 + 3200 * 4 / 32)
    # chats attend within themselves: two documents of 100 and 300 tokens, weighted by tokens
    assert flops.attention_flops(cfg, 2048, [100, 300]) == (100 * flops.attention_flops(cfg, 100)
                                                            + 300 * flops.attention_flops(cfg, 300)) / 400
    assert flops.attention_flops(cfg, 2048, [100, 300]) < flops.attention_flops(cfg, 2048)
    per_token = flops.flops_per_token(cfg, 2048, {})
    assert per_token == 4 * flops.active_parameters(cfg) + flops.attention_flops(cfg, 2048)
    # 15,305 tokens/s (the fast path's run of 2026-11-29) is then about a quarter of the H200's peak
    assert 0.2 < flops.mfu(15305, cfg, 2048, {}) < 0.3
