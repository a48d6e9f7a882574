"""Small random gpt-oss checkpoints and what transformers computes from them.

Builds small random gpt-oss checkpoints *the way real gpt-oss checkpoints ship*
(expert weights as MXFP4 `*_blocks`/`*_scales` U8 tensors, everything else BF16),
loads them back with transformers (`Mxfp4Config(dequantize=True)`, eager attention,
eager experts, fp32 on CPU) and records what `GptOssForCausalLM` computes.

Because the reference model is what transformers *loaded from the files*, a Swift
engine that matches these logits also matches transformers' MXFP4 dequantization,
BF16 upcast, config parsing (rope_parameters vs rope_scaling) and sharding.
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import GptOssConfig, GptOssForCausalLM, Mxfp4Config
from transformers.integrations.mxfp4 import convert_moe_packed_tensors

EXPERT_PROJS = ("gate_up_proj", "down_proj")


def config_kwargs(hidden=64, layers=4, heads=4, kv_heads=2, head_dim=16, experts=8, top_k=2,
                  intermediate=64, vocab=256, sliding_window=4, layer_types=None,
                  yarn_factor=8.0, original_max=16, truncate=False, rope_theta=150000.0,
                  beta_fast=32.0, beta_slow=1.0, max_pos=256, eps=1e-5):
    return dict(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        head_dim=head_dim, num_local_experts=experts, num_experts_per_tok=top_k,
        sliding_window=sliding_window, layer_types=layer_types, max_position_embeddings=max_pos,
        rms_norm_eps=eps,
        rope_parameters={"rope_type": "yarn", "factor": yarn_factor, "beta_fast": beta_fast,
                         "beta_slow": beta_slow, "truncate": truncate,
                         "original_max_position_embeddings": original_max, "rope_theta": rope_theta},
    )


def draw_config(rng):
    """config_kwargs of a random small gpt-oss drawn from `rng` (random.Random): layers,
    heads/GQA, head_dim, experts, top-k, sizes, window, layer types, RoPE default or YaRN with a
    random factor/betas/truncate (the live checks' models)."""
    kv_heads = rng.choice([1, 2, 4])
    heads = kv_heads * rng.choice([1, 2, 4])
    layers = rng.randint(2, 4)
    experts = rng.choice([4, 6, 8])
    original = rng.choice([32, 256, 2048, 4096])
    kwargs = config_kwargs(
        hidden=rng.choice([32, 64, 96]), layers=layers, heads=heads, kv_heads=kv_heads,
        head_dim=rng.choice([8, 16, 32]), experts=experts, top_k=rng.randint(1, min(4, experts)),
        intermediate=rng.choice([32, 64, 96]), vocab=rng.randint(64, 400), sliding_window=rng.randint(2, 10),
        layer_types=[rng.choice(["sliding_attention", "full_attention"]) for _ in range(layers)],
        yarn_factor=rng.choice([1.0, 2.0, 8.0, 32.0]), original_max=original, truncate=rng.random() < 0.5,
        rope_theta=rng.choice([10000.0, 150000.0, 500000.0]), beta_fast=rng.choice([16.0, 32.0]),
        beta_slow=rng.choice([1.0, 2.0]), max_pos=original * 4, eps=rng.choice([1e-5, 1e-6]))
    if rng.random() < 0.25:  # plain RoPE
        kwargs["rope_parameters"] = {"rope_type": "default", "rope_theta": kwargs["rope_parameters"]["rope_theta"]}
    return kwargs


def split(rng, total, parts):
    """`total` cut into `parts` random positive lengths (packed sequences)."""
    cuts = sorted(rng.sample(range(1, total), parts - 1))
    return [b - a for a, b in zip([0] + cuts, cuts + [total])]


def _randomize(model, gen):
    """Non-zero everything (biases, sinks, norms) so no term can be silently dropped."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "experts" in name and not name.endswith("_bias"):
                continue  # replaced by MXFP4 bytes below
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("embed_tokens.weight"):
                p.copy_(torch.randn(p.shape, generator=gen))
            elif name.endswith("sinks"):
                p.copy_(torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:  # projection weights [out, in]
                p.copy_(torch.randn(p.shape, generator=gen) / (p.shape[-1] ** 0.5))


def _random_mxfp4(gen, experts, out_features, in_features):
    """Random MXFP4 tensors in the checkpoint layout: blocks [E, out, in/32, 16], scales [E, out, in/32].
    Scales 2^-6..2^-3 keep the weights O(0.1), like a trained model's."""
    g = in_features // 32
    blocks = torch.randint(0, 256, (experts, out_features, g, 16), generator=gen, dtype=torch.int32).to(torch.uint8)
    scales = torch.randint(121, 125, (experts, out_features, g), generator=gen, dtype=torch.int32).to(torch.uint8)
    return blocks, scales


def write_checkpoint(directory, kwargs, seed, shards=1, hub_style_config=False):
    """Writes config.json + safetensors (sharded with an index when shards > 1)."""
    os.makedirs(directory, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    config = GptOssConfig(**kwargs)
    model = GptOssForCausalLM(config).float()
    _randomize(model, gen)
    tensors = {}
    for name, p in model.state_dict().items():
        if ".mlp.experts." in name and not name.endswith("_bias"):
            continue
        tensors[name] = p.detach().to(torch.bfloat16).contiguous()  # gpt-oss ships BF16 outside the experts
    e, h, i = config.num_local_experts, config.hidden_size, config.intermediate_size
    for layer in range(config.num_hidden_layers):
        prefix = f"model.layers.{layer}.mlp.experts."
        # gate_up: out = 2I (interleaved gate/up rows), in = H; down: out = H, in = I
        for proj, (out_f, in_f) in (("gate_up_proj", (2 * i, h)), ("down_proj", (h, i))):
            blocks, scales = _random_mxfp4(gen, e, out_f, in_f)
            tensors[prefix + proj + "_blocks"] = blocks
            tensors[prefix + proj + "_scales"] = scales

    config_dict = config.to_dict()
    config_dict["quantization_config"] = {
        "quant_method": "mxfp4",
        "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                   "model.embed_tokens", "lm_head"],
    }
    config_dict["architectures"] = ["GptOssForCausalLM"]
    if hub_style_config:
        # openai/gpt-oss-* config.json (written by transformers 4.55): rope_scaling + top-level
        # rope_theta, and the experts_per_token alias next to num_experts_per_tok.
        rope = dict(config_dict.pop("rope_parameters"))
        config_dict["rope_theta"] = rope.pop("rope_theta")
        config_dict["rope_scaling"] = rope
        config_dict["experts_per_token"] = config_dict["num_experts_per_tok"]
        config_dict["swiglu_limit"] = 7.0
        config_dict["initial_context_length"] = rope.get("original_max_position_embeddings", 4096)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config_dict, f, indent=2, sort_keys=True)

    names = sorted(tensors)
    if shards == 1:
        save_file(tensors, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map, total = {}, 0
        for s in range(shards):
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: tensors[n] for n in names[s::shards]}
            save_file(part, os.path.join(directory, fname), metadata={"format": "pt"})
            for n, t in part.items():
                weight_map[n] = fname
                total += t.numel() * t.element_size()
        with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return tensors


def benchmark_model(directory, hidden=1024, layers=4):
    """The CPU benchmarks' random gpt-oss (Benchmarks/engine, Benchmarks/generate): hidden and
    intermediate `hidden`, `layers` layers (sliding 128 / full), 16 query heads x 64 over 4 kv
    heads, 8 experts top-4, vocab 4096, YaRN; written to `directory` unless the same one is
    there (bench.json). Returns its config_kwargs."""
    kwargs = config_kwargs(hidden=hidden, layers=layers, heads=16, kv_heads=4, head_dim=64, experts=8,
                           top_k=4, intermediate=hidden, vocab=4096, sliding_window=128,
                           yarn_factor=32.0, original_max=4096, max_pos=131072)
    marker = os.path.join(directory, "bench.json")
    if not (os.path.exists(marker) and json.load(open(marker)) == kwargs):
        write_checkpoint(directory, kwargs, seed=5)
        json.dump(kwargs, open(marker, "w"))
    return kwargs


def left_padded(prompts, pad=0):
    """Prompts of different lengths as transformers' `generate` takes them: (input_ids,
    attention_mask), [B, longest], padding on the left."""
    t = max(map(len, prompts))
    ids = torch.full((len(prompts), t), pad, dtype=torch.long)
    mask = torch.zeros(len(prompts), t, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, t - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[b, t - len(p):] = 1
    return ids, mask


def load_reference(directory, tensors=None):
    """What transformers computes from the files: fp32, eager attention, eager experts."""
    model = GptOssForCausalLM.from_pretrained(
        directory, quantization_config=Mxfp4Config(dequantize=True), dtype=torch.float32,
        attn_implementation="eager", experts_implementation="eager")
    # transformers 5.17 leaves dequantized MXFP4 experts in bf16 even with dtype=float32; the
    # upcast is exact (bf16 is a subset of fp32) and makes the reference fp32 end to end.
    dtypes = {p.dtype for p in model.parameters()}
    model = model.float().eval()
    if tensors is not None:  # prove the loaded experts are transformers' own dequantization of our bytes
        for layer, block in enumerate(model.model.layers):
            for proj in EXPERT_PROJS:
                prefix = f"model.layers.{layer}.mlp.experts.{proj}"
                want = convert_moe_packed_tensors(tensors[prefix + "_blocks"], tensors[prefix + "_scales"]).float()
                got = getattr(block.mlp.experts, proj).detach()
                assert got.dtype == torch.float32 and torch.equal(got, want), f"{prefix}: loaded != dequantized"
        print(f"  loaded parameter dtypes {sorted(map(str, dtypes))}; experts == convert_moe_packed_tensors(bytes)")
    return model


def random_inputs(gen, vocab, batch, seq, lengths=None, packed=None):
    """Returns dict of int64 tensors: input_ids, labels, and attention_mask (padding) or
    position_ids (packing: positions restart at 0 for each packed sequence)."""
    ids = torch.randint(0, vocab, (batch, seq), generator=gen)
    out = {"input_ids": ids}
    labels = ids.clone()
    if lengths is not None:
        mask = torch.zeros(batch, seq, dtype=torch.int64)
        for b, n in enumerate(lengths):
            mask[b, :n] = 1
        labels[mask == 0] = -100
        out["attention_mask"] = mask
    if packed is not None:
        pos = torch.zeros(batch, seq, dtype=torch.int64)
        for b, parts in enumerate(packed):
            assert sum(parts) == seq
            start = 0
            for n in parts:
                pos[b, start:start + n] = torch.arange(n)
                if start > 0:
                    labels[b, start] = -100  # don't predict the next sequence's first token
                start += n
        out["position_ids"] = pos
    # a few extra ignored labels inside sequences, like a chat template's prompt tokens
    labels[:, 1] = -100
    out["labels"] = labels
    return out


def random_cases(gen, vocab, seq, lengths, packed):
    """The three batches every forward reference holds: one row ("single"), rows right-padded to
    `lengths` ("padded"), rows of packed sequences of `packed` lengths ("packed")."""
    return {"single": random_inputs(gen, vocab, 1, seq),
            "padded": random_inputs(gen, vocab, len(lengths), seq, lengths=lengths),
            "packed": random_inputs(gen, vocab, len(packed), seq, packed=packed)}


def reference_record(model, cases, packed):
    """What transformers computes for each case, keyed as reference.safetensors holds it
    (`<case>.<input>`, `<case>.logits`, `<case>.loss`), and the naive packed call's difference
    (packed_reference's cross_talk)."""
    record, cross_talk = {}, None
    for name, inputs in cases.items():
        if name == "packed":
            logits, loss, cross_talk = packed_reference(model, inputs, packed)
        else:
            logits, loss = reference_outputs(model, inputs)
        for k, v in inputs.items():
            record[f"{name}.{k}"] = v.contiguous()
        record[f"{name}.logits"], record[f"{name}.loss"] = logits, loss
    return record, cross_talk


@torch.no_grad()
def reference_outputs(model, inputs):
    kwargs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "position_ids", "labels")}
    out = model(**kwargs, use_cache=False)
    loss = out.loss.float().reshape(()) if out.loss is not None else None
    return out.logits.float().contiguous(), loss


@torch.no_grad()
def packed_reference(model, inputs, packed):
    """Reference for a packed batch: every packed sequence run alone (positions from 0, no
    attention across sequences), logits laid side by side, loss by transformers' own
    ForCausalLMLoss over the packed labels.

    Why not one transformers call with restarting position_ids: GptOssModel.forward (5.17) does
    not hand position_ids to create_causal_mask, so its packed-sequence detection never runs and
    a packed row would attend across sequences. Returns (logits, loss, cross_talk) where
    cross_talk is the max relative difference of that naive packed call, printed to show the
    segment mask matters."""
    ids = inputs["input_ids"]
    logits = torch.zeros(ids.shape[0], ids.shape[1], model.config.vocab_size)
    for b, parts in enumerate(packed):
        start = 0
        for n in parts:
            logits[b, start:start + n] = model(input_ids=ids[b:b + 1, start:start + n], use_cache=False).logits[0]
            start += n
    loss = model.loss_function(logits, inputs["labels"], model.config.vocab_size).float().reshape(())
    naive = model(input_ids=ids, position_ids=inputs["position_ids"], use_cache=False).logits
    cross_talk = ((naive - logits).abs().max() / logits.abs().max()).item()
    return logits.contiguous(), loss, cross_talk
