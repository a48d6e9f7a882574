"""Regenerates Tests/TunaEngineTests/Fixtures (committed; CI does not rerun this).

    pip install torch==2.13.0+cpu transformers==5.17.0 safetensors
    PYTHONPATH=Tests/Python python3 -m reference.engine_goldens

Fixtures:
  mxfp4.safetensors   blocks/scales bytes (every scale 0..255) + transformers' dequantization
  topk2/              4 layers (sliding, full, sliding, full), window 4, 8 experts top-2, YaRN
                      x32 over 4096 (gpt-oss's own rope settings), truncate=false, transformers-5 config.json (rope_parameters), one file
  topk4/              3 layers (full, sliding, sliding), window 8, 8 experts top-4, YaRN
                      x4 over 2048, truncate=true, hub-style config.json (rope_scaling, rope_theta,
                      experts_per_token), 2 shards + model.safetensors.index.json
Each model dir has reference.safetensors: per case (single, padded, packed) the int64 inputs,
the fp32 logits [B, T, V] and the scalar loss transformers computed from the files.
"""
import os

import torch
from safetensors.torch import save_file
from transformers.integrations.mxfp4 import convert_moe_packed_tensors

from reference import gptoss as ref
from reference.paths import ENGINE_FIXTURES as ROOT


def write_mxfp4_fixture(path):
    gen = torch.Generator().manual_seed(7)
    # [E=2, out=8, G=16, 16]: 256 blocks, so every E8M0 scale byte 0..255 appears once
    blocks = torch.randint(0, 256, (2, 8, 16, 16), generator=gen, dtype=torch.int32).to(torch.uint8)
    scales = torch.randperm(256, generator=gen).to(torch.uint8).reshape(2, 8, 16)
    deq = convert_moe_packed_tensors(blocks, scales)  # transformers' default: bf16
    save_file({"blocks": blocks, "scales": scales, "dequantized": deq.float().contiguous()}, path,
              metadata={"dequantized": f"convert_moe_packed_tensors -> {deq.dtype}, layout [E, G*32, out]"})  # one key: safetensors orders metadata by hash


def write_model_case(name, kwargs, seed, shards, hub_style, padded_lengths, packed, seq):
    directory = os.path.join(ROOT, name)
    tensors = ref.write_checkpoint(directory, kwargs, seed, shards=shards, hub_style_config=hub_style)
    model = ref.load_reference(directory, tensors)
    gen = torch.Generator().manual_seed(seed + 1)
    cases = ref.random_cases(gen, kwargs["vocab_size"], seq, padded_lengths, packed)
    out, cross_talk = ref.reference_record(model, cases, packed)
    for case in cases:
        if case == "packed":
            print(f"{name}/packed: naive transformers packed call differs by {cross_talk:.2e} (cross-sequence attention)")
        print(f"{name}/{case}: logits {tuple(out[case + '.logits'].shape)} loss {out[case + '.loss'].item():.6f}")
    save_file(out, os.path.join(directory, "reference.safetensors"), metadata={"cases": "single,padded,packed"})


def main():
    os.makedirs(ROOT, exist_ok=True)
    write_mxfp4_fixture(os.path.join(ROOT, "mxfp4.safetensors"))
    write_model_case(
        "topk2", ref.config_kwargs(layers=4, top_k=2, sliding_window=4, truncate=False, yarn_factor=32.0,
                                             original_max=4096, max_pos=131072), seed=1234,
        shards=1, hub_style=False, padded_lengths=[16, 11, 5], packed=[[5, 7, 4], [10, 6]], seq=16)
    write_model_case(
        "topk4", ref.config_kwargs(layers=3, heads=8, kv_heads=2, head_dim=8, top_k=4, intermediate=96,
                                   vocab=320, sliding_window=8, truncate=True, yarn_factor=4.0, original_max=2048, max_pos=8192,
                                   layer_types=["full_attention", "sliding_attention", "sliding_attention"]),
        seed=99, shards=2, hub_style=True, padded_lengths=[20, 13], packed=[[9, 11], [3, 12, 5]], seq=20)


if __name__ == "__main__":
    main()
