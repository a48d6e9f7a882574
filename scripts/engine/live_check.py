#!/usr/bin/env python3
"""Live cross-check of TunaEngine against transformers on a freshly drawn random gpt-oss.

Draws a random small config (layers, heads/GQA, head_dim, experts, top-k, sizes, window,
layer types, RoPE default/YaRN with random factor/betas/truncate, hub-style or transformers-5
config.json, 1-3 shards) and random inputs, seeded by time (the seed is printed; rerun with
--seed N to reproduce). Writes the MXFP4 checkpoint + reference.safetensors to a temp dir,
runs the Swift test `LiveCheckTests` on it (env TUNA_LIVE_CHECK_DIR), then reads back the
logits the Swift side wrote with its own SafeTensorsWriter and compares them here too.

    python3 -m scripts.engine.live_check                 # from the repo root; exit 0 = pass
    python3 -m scripts.engine.live_check --seed 123 --keep
    python3 -m scripts.engine.live_check --no-swift --out /tmp/live   # only make the dir
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file

from scripts.engine import gptoss_ref as ref
from scripts.lib.checks import REPO, add_seed, seeded

TOLERANCE = 1e-4


def draw_config(rng):
    kv_heads = rng.choice([1, 2, 4])
    heads = kv_heads * rng.choice([1, 2, 4])
    layers = rng.randint(2, 4)
    experts = rng.choice([4, 6, 8])
    original = rng.choice([32, 256, 2048, 4096])
    kwargs = ref.config_kwargs(
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
    cuts = sorted(rng.sample(range(1, total), parts - 1))
    return [b - a for a, b in zip([0] + cuts, cuts + [total])]


def main():
    ap = argparse.ArgumentParser()
    add_seed(ap)
    ap.add_argument("--out", default=None, help="directory to write (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--no-swift", action="store_true", help="only write the checkpoint + reference")
    ap.add_argument("--package-path", default=REPO, help="Swift package whose TunaEngineTests to run")
    args = ap.parse_args()
    seed, rng = seeded(args, "engine.live_check")
    kwargs = draw_config(rng)
    shards, hub = rng.randint(1, 3), rng.random() < 0.5
    print(f"config {kwargs} shards={shards} hub_style={hub}", flush=True)

    out = args.out or tempfile.mkdtemp(prefix="tuna-live-")
    tensors = ref.write_checkpoint(out, kwargs, seed, shards=shards, hub_style_config=hub)
    model = ref.load_reference(out, tensors)
    gen = torch.Generator().manual_seed(seed)
    seq = rng.randint(6, 24)
    batch = rng.randint(2, 3)
    lengths = [seq] + [rng.randint(1, seq) for _ in range(batch - 1)]
    packed = [split(rng, seq, rng.randint(1, min(3, seq))) for _ in range(batch)]
    cases = {
        "single": ref.random_inputs(gen, kwargs["vocab_size"], 1, seq),
        "padded": ref.random_inputs(gen, kwargs["vocab_size"], batch, seq, lengths=lengths),
        "packed": ref.random_inputs(gen, kwargs["vocab_size"], batch, seq, packed=packed),
    }
    record = {}
    for name, inputs in cases.items():
        if name == "packed":
            logits, loss, _ = ref.packed_reference(model, inputs, packed)
        else:
            logits, loss = ref.reference_outputs(model, inputs)
        for k, v in inputs.items():
            record[f"{name}.{k}"] = v.contiguous()
        record[f"{name}.logits"], record[f"{name}.loss"] = logits, loss
    save_file(record, os.path.join(out, "reference.safetensors"), metadata={"cases": ",".join(cases)})
    print(f"wrote {out} (padded lengths {lengths}, packed {packed})", flush=True)
    if args.no_swift:
        return 0

    env = dict(os.environ, TUNA_LIVE_CHECK_DIR=out)
    cmd = ["swift", "test", "--package-path", args.package_path, "--filter", "LiveCheckTests"]
    print("running:", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd, env=env).returncode
    failed = rc != 0
    # Independent check on the Python side of what Swift wrote (also proves Python reads our writer's files).
    swift_path = os.path.join(out, "swift_logits.safetensors")
    if os.path.exists(swift_path):
        swift = load_file(swift_path)
        for name in cases:
            want, got = record[f"{name}.logits"], swift[f"{name}.logits"]
            err = ((got - want).abs().max() / want.abs().max()).item()
            print(f"python-side {name}: max rel err {err:.2e}")
            failed |= not err < TOLERANCE
    else:
        print("swift_logits.safetensors missing")
        failed = True
    if not (args.keep or args.out):
        shutil.rmtree(out, ignore_errors=True)
    print(f"live_check seed {seed}: {'FAILED' if failed else 'passed'}")
    print("0 passed, 1 failed" if failed else "1 passed, 0 failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
