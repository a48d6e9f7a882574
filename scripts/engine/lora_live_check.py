#!/usr/bin/env python3
"""Live cross-check of TunaEngine's LoRA training against PEFT + transformers + torch.

Draws, from one seed (the current time unless --seed; printed so a failure can be rerun):
a random small gpt-oss (as live_check.py), random LoRA targets (attention modules by short
name, by "all-linear", or none; expert gate_up_proj/down_proj on random layers, sometimes
both in one layer so PEFT nests the wrappers), r, alpha, rsLoRA, optimiser and scheduler
hyperparameters, and one padded or packed batch (a draw too ill-conditioned to judge the
engine, i.e. whose fp32 and fp64 PyTorch runs already differ by > 1e-5, is replaced by the
next seed's, at most twice). Writes the reference directory
(lora_ref.write_case: model/, initial_adapter/, reference.safetensors, lora_reference.json),
runs the Swift test LoRALiveCheckTests on it (env TUNA_LORA_CHECK_DIR), then checks on the
Python side what Swift wrote to DIR/swift/:
  - grads.safetensors / steps.json against the reference gradients, losses, lrs, norms;
  - adapter/ (LoRAAdapter.save after the steps) against the reference final weights, and
    loaded with PeftModel.from_pretrained strictly (any missing or unexpected key, warning,
    or tensor not loaded bit for bit fails);
  - PEFT's logits with that loaded adapter against logits.safetensors (Swift's own logits
    with it) and against the reference run's final logits.

    python3 -m scripts.engine.lora_live_check                 # from the repo root; exit 0 = pass
    python3 -m scripts.engine.lora_live_check --seed 123 --keep
    python3 -m scripts.engine.lora_live_check --no-swift --out /tmp/lora   # only make the dir

The Swift test binary must be built (`swift build --build-tests`; scripts/test.sh does); the
test runs with --skip-build unless --build is given.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import torch
from safetensors.torch import load_file

from scripts.engine import gptoss_ref as ref
from scripts.engine import live_check  #  (draw_config, split)
from scripts.engine import lora_ref
from scripts.lib.checks import REPO

LOSS_TOLERANCE = 1e-5
TOLERANCE = 1e-4


def draw_lora(rng, layers):
    """Random targets + LoRA settings; never empty (PEFT refuses a config that matches nothing)."""
    while True:
        mode = rng.choice(["short", "short", "all-linear", "none"])
        if mode == "short":
            modules = rng.sample(lora_ref.ATTENTION_MODULES, rng.randint(1, 4))
        elif mode == "all-linear":
            modules = "all-linear"
        else:
            modules = None
        params = []
        for layer in range(layers):
            choice = rng.choice(["none", "none", "gate_up_proj", "down_proj", "both"])
            for proj in ("gate_up_proj", "down_proj"):
                if choice in (proj, "both"):
                    params.append(f"{layer}.mlp.experts.{proj}")
        if modules is not None or params:
            break
    r = rng.choice([1, 2, 4, 8])
    return {"r": r, "lora_alpha": rng.choice([r, 2 * r, 16, 32]), "use_rslora": rng.random() < 0.5,
            "target_modules": modules, "target_parameters": params}


def draw_hyperparameters(rng, settings, kwargs):
    kind = rng.choice(["constant", "linear", "cosine", "cosine_with_min_lr"])
    total = rng.randint(5, 12)
    warmup = rng.randint(0, 3)
    if kind == "constant":
        # HF's "constant" ignores warmup while the engine's "constant" warms up (HF's
        # constant_with_warmup); only warmup 0 means the same thing on both sides.
        warmup = 0
    # Conditioning, so a failure means the engine and not the draw: Adam's update
    # g / (sqrt(v) + eps) turns gradient rounding noise far below eps into weight noise ~ lr *
    # noise / eps, and the weights are compared relative to their own scale. So eps >= 5e-4 (a
    # tiny eps makes the final weights depend on the gradients' last bits; make_lora_goldens.py
    # measured it), and lr a fraction of the initial A's and B's scale (lr 1e-2 on a B of std
    # 1.3e-2 put the fp32-vs-fp64 spread of the final weights at 6e-5).
    widest = max(kwargs["hidden_size"], kwargs["num_attention_heads"] * kwargs["head_dim"], kwargs["intermediate_size"])
    scale = min(lora_ref.b_init_std(settings), 1 / widest ** 0.5)  # A ~ N(0, 1/in)
    lr = rng.choice([0.03, 0.06, 0.12]) * scale
    return {"lr": float(f"{lr:.2g}"), "betas": (rng.choice([0.8, 0.85, 0.9]), rng.choice([0.95, 0.98, 0.999])),
            "eps": rng.choice([5e-4, 1e-3]), "weight_decay": rng.choice([0.0, 0.01, 0.1]),
            # a norm between the typical gradient norms sometimes clips and sometimes not
            "max_grad_norm": rng.choice([0.3, 1.0, 3.0, 100.0]),
            "scheduler": kind, "warmup_steps": warmup, "total_steps": total,
            "min_lr_ratio": rng.choice([0.0, 0.1, 0.3]) if kind == "cosine_with_min_lr" else 0.0, "steps": 5}


def rel(got, want):
    """max_rel on tensors or on plain lists of floats (kept in float64: lrs differ in the last bits)."""
    as64 = (lambda x: x.double()) if torch.is_tensor(got) else (lambda x: torch.tensor(x, dtype=torch.float64))
    return lora_ref.max_rel(as64(got), as64(want))


def python_side(out, case, packed, record_grads, reference, meta, settings):
    """Checks DIR/swift/* here; returns a list of failure strings."""
    failures = []
    swift = os.path.join(out, "swift")

    def compare(what, err, tol):
        ok = err < tol
        print(f"python-side {what}: max rel err {err:.2e}{'' if ok else '  FAIL'}")
        if not ok:
            failures.append(f"{what} ({err:.2e} >= {tol:g})")

    for needed in ("grads.safetensors", "steps.json", "adapter", "logits.safetensors"):
        if not os.path.exists(os.path.join(swift, needed)):
            failures.append(f"swift/{needed} missing")
    if failures:
        return failures

    grads = load_file(os.path.join(swift, "grads.safetensors"))
    if sorted(grads) != sorted(record_grads):
        failures.append(f"gradient names differ: {sorted(set(grads) ^ set(record_grads))}")
    compare("gradients (worst tensor)", max((rel(grads[k], record_grads[k]) for k in record_grads if k in grads),
                                            default=float("inf")), TOLERANCE)

    steps = json.load(open(os.path.join(swift, "steps.json")))
    compare("initial loss", abs(steps["loss"] - meta["loss"]) / abs(meta["loss"]), LOSS_TOLERANCE)
    if steps["tokens"] != meta["tokens"]:
        failures.append(f"scored tokens {steps['tokens']} != {meta['tokens']}")
    compare("per-step losses", rel(steps["losses"], meta["losses"]), TOLERANCE)
    compare("per-step grad norms", rel(steps["grad_norms"], meta["grad_norms"]), TOLERANCE)
    compare("per-step lrs", rel(steps["lrs"], meta["lrs"]), 1e-12)

    adapter_dir = os.path.join(swift, "adapter")
    weights = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    final = {k[len("final."):]: v for k, v in reference.items() if k.startswith("final.")}
    if sorted(weights) != sorted(final):
        failures.append(f"saved adapter tensor names differ from PEFT's: {sorted(set(weights) ^ set(final))}")
    compare("trained adapter weights (worst tensor)",
            max((rel(weights[k], final[k]) for k in final if k in weights), default=float("inf")), TOLERANCE)

    # The user's path: PEFT loads the directory Swift wrote, strictly.
    model, problems = lora_ref.load_adapter_strict(os.path.join(out, "model"), adapter_dir, settings)
    for p in problems:
        print(f"python-side PEFT load: {p}  FAIL")
    failures += [f"PEFT load: {p}" for p in problems]
    if not problems:
        print("python-side PEFT load: PeftModel.from_pretrained loaded every tensor bit for bit, nothing missing or extra")
    inputs = {k[len(case) + 1:]: v for k, v in reference.items() if k.startswith(case + ".") and v.dtype == torch.int64}
    with torch.no_grad():
        peft_logits = lora_ref.forward(model, inputs, packed)[0]
    swift_logits = load_file(os.path.join(swift, "logits.safetensors"))[f"{case}.logits"]
    compare("PEFT(swift adapter) logits vs Swift logits", rel(swift_logits, peft_logits), TOLERANCE)
    compare("PEFT(swift adapter) logits vs reference-trained logits", rel(peft_logits, reference[f"{case}.final_logits"]),
            TOLERANCE)
    return failures


# A draw whose own fp32 and fp64 PyTorch runs differ by more than this is ill-conditioned (a
# top-k routing near-tie that an update flips, Adam on gradients ~ eps, ...): comparing the
# engine against it would test the draw, not the engine. It is replaced by the next seed.
CONDITIONING_LIMIT = TOLERANCE / 10
ATTEMPTS = 3


def draw_and_write(seed, out):
    """Draws everything from `seed` and writes the reference directory. Returns
    (case, packed, settings, record, meta)."""
    rng = random.Random(seed)
    kwargs = live_check.draw_config(rng)
    settings = draw_lora(rng, kwargs["num_hidden_layers"])
    hp = draw_hyperparameters(rng, settings, kwargs)
    print(f"config {kwargs}", flush=True)
    print(f"lora {settings}", flush=True)
    print(f"train {hp}", flush=True)

    gen = torch.Generator().manual_seed(seed)
    seq, batch = rng.randint(6, 20), rng.randint(2, 3)
    packed = None
    if rng.random() < 0.5:
        case = "padded"
        lengths = [seq] + [rng.randint(2, seq) for _ in range(batch - 1)]
        inputs = ref.random_inputs(gen, kwargs["vocab_size"], batch, seq, lengths=lengths)
        print(f"batch: padded, lengths {lengths}", flush=True)
    else:
        case = "packed"
        packed = [live_check.split(rng, seq, rng.randint(1, min(3, seq // 2))) for _ in range(batch)]
        inputs = ref.random_inputs(gen, kwargs["vocab_size"], batch, seq, packed=packed)
        print(f"batch: packed {packed}", flush=True)

    shards, hub = rng.randint(1, 2), rng.random() < 0.5
    record, meta = lora_ref.write_case(out, kwargs, seed, settings, hp, case, inputs, packed=packed, shards=shards,
                                       hub_style=hub, base_model_name=os.path.join(out, "model"))
    print(f"reference: loss {meta['loss']:.6f} over {meta['tokens']} tokens, {len(record['grads'])} adapter tensors, "
          f"grad norms {[round(x, 4) for x in meta['grad_norms']]} (clipped at {meta['clipped_steps']}), lrs {meta['lrs']}")
    print("reference fp32 vs fp64 PyTorch: " + ", ".join(f"{k} {v:.1e}" for k, v in meta["fp32_vs_fp64"].items()),
          flush=True)
    return case, packed, settings, record, meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", default=None, help="directory to write (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--no-swift", action="store_true", help="only write the reference directory")
    ap.add_argument("--build", action="store_true", help="let swift test build first (default: --skip-build)")
    ap.add_argument("--package-path", default=REPO, help="Swift package whose TunaEngineTests to run")
    args = ap.parse_args()
    first = args.seed if args.seed is not None else int(time.time())
    print(f"lora_live_check seed {first} (rerun: python3 -m scripts.engine.lora_live_check --seed {first})", flush=True)
    out = args.out or tempfile.mkdtemp(prefix="tuna-lora-live-")
    for seed in range(first, first + ATTEMPTS):
        if seed != first:
            print(f"-- drawing again with seed {seed}", flush=True)
            # what write_case made (a stale shard of a sharded checkpoint would break loading)
            for entry in ("model", "initial_adapter", "reference.safetensors", "lora_reference.json"):
                path = os.path.join(out, entry)
                shutil.rmtree(path) if os.path.isdir(path) else os.path.exists(path) and os.remove(path)
        case, packed, settings, record, meta = draw_and_write(seed, out)
        spread = max(meta["fp32_vs_fp64"].values())
        if spread <= CONDITIONING_LIMIT:
            break
        print(f"seed {seed} is ill-conditioned: its fp32 and fp64 PyTorch runs differ by {spread:.1e} "
              f"(> {CONDITIONING_LIMIT:g}), so it cannot judge the engine at {TOLERANCE:g}", flush=True)
    else:
        if not (args.keep or args.out):
            shutil.rmtree(out, ignore_errors=True)
        print(f"FAILED: {ATTEMPTS} ill-conditioned draws in a row from seed {first}; the drawing needs attention")
        print("0 passed, 1 failed")
        return 1
    print(f"wrote {out} (seed {seed})", flush=True)
    if args.no_swift:
        return 0

    env = dict(os.environ, TUNA_LORA_CHECK_DIR=out)
    cmd = ["swift", "test", "--package-path", args.package_path] + ([] if args.build else ["--skip-build"]) \
        + ["--filter", "LoRALiveCheckTests"]
    print("running:", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd, env=env).returncode
    failures = [f"swift test exited {rc}"] if rc != 0 else []
    reference = load_file(os.path.join(out, "reference.safetensors"))
    failures += python_side(out, case, packed, record["grads"], reference, meta, settings)
    if not (args.keep or args.out):
        shutil.rmtree(out, ignore_errors=True)
    for f in failures:
        print(f"FAILED: {f}")
    print(f"lora_live_check seed {first}: {'FAILED' if failures else 'passed'}")
    print("0 passed, 1 failed" if failures else "1 passed, 0 failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
