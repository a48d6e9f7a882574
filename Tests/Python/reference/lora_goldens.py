"""Regenerates the LoRA fixtures under Tests/TunaEngineTests/Fixtures (committed).

    pip install torch==2.13.0+cpu transformers==5.17.0 safetensors==0.8.0 peft==0.21.2
    PYTHONPATH=Tests/Python python3 -m reference.lora_goldens   # rewrites lora-attn/ and lora-experts/

test_lora_goldens.py regenerates them into a temp dir and compares (compare_tree).

Fixtures (each: model/, initial_adapter/, reference.safetensors, lora_reference.json; see
lora_files.write_case for the layout):
  lora-attn/     2 layers (sliding window 4, full), 8 experts top-2, q/k/v/o projecting to
                 4 heads x 16 = 64 != hidden 32 (a transposed A or B cannot pass); LoRA on
                 q_proj,k_proj,v_proj,o_proj, r=4 alpha=8 (scaling 2); padded batch (3 rows,
                 lengths 16/11/5); linear schedule with 2 warmup steps over 8; max_grad_norm
                 below every step's norm, so every step clips.
  lora-experts/  3 layers (sliding, full, sliding), 8 experts top-4, intermediate 64 !=
                 hidden 32; LoRA "all-linear" (PEFT resolves it to q/k/v/o and saves the
                 resolved module list) plus target_parameters on layer 0 gate_up_proj AND
                 down_proj (PEFT nests the wrappers: gate_up under ...experts.base_layer.lora_*)
                 and layer 2 gate_up_proj alone (...experts.lora_*, same names down_proj alone
                 would get); r=4 alpha=16 use_rslora (scaling 8, not 4); packed batch;
                 cosine_with_min_lr (1 warmup step over 6, min ratio 0.1); max_grad_norm
                 between the step norms, so some steps clip and some do not.
The fp32-vs-fp64 PyTorch spread of each case is printed (and kept in lora_reference.json):
it shows the 1e-4 tolerances of the Swift tests sit well above what two correct fp32
implementations can disagree by.
"""
import json
import os
import shutil

import torch
from safetensors.torch import load_file

from reference import gptoss as ref
from reference import lora as lora_ref
from reference.lora_files import write_case
from reference.paths import ENGINE_FIXTURES as FIXTURES

FLOAT_CHECK = 1e-4  # the staleness check: relative tolerance on computed floats (see compare_tree)


def case_attn(root):
    kwargs = ref.config_kwargs(hidden=32, layers=2, heads=4, kv_heads=2, head_dim=16, experts=8, top_k=2,
                               intermediate=32, vocab=128, sliding_window=4,
                               layer_types=["sliding_attention", "full_attention"])
    settings = {"r": 4, "lora_alpha": 8, "use_rslora": False, "target_modules": list(lora_ref.ATTENTION_MODULES),
                "target_parameters": []}
    # eps and lr are chosen for conditioning, not realism: Adam's update g / (sqrt(v) + eps) turns
    # fp32 rounding noise in gradients far below eps into weight noise of order lr * noise / eps,
    # so a tiny eps would make the final weights depend on the last bits of the gradients
    # (measured: eps 1e-6 -> 8e-5 fp32-vs-fp64 spread in the final weights; these -> ~1e-6).
    hp = {"lr": 1e-2, "betas": (0.8, 0.95), "eps": 1e-4, "weight_decay": 0.1, "max_grad_norm": 0.5,
          "scheduler": "linear", "warmup_steps": 2, "total_steps": 8, "min_lr_ratio": 0.0, "steps": 5}
    gen = torch.Generator().manual_seed(4321)
    inputs = ref.random_inputs(gen, kwargs["vocab_size"], 3, 16, lengths=[16, 11, 5])
    return write_case(os.path.join(root, "lora-attn"), kwargs, 4321, settings, hp, "padded", inputs,
                               base_model_name="tuna-fixture/lora-attn")


def case_experts(root):
    kwargs = ref.config_kwargs(hidden=32, layers=3, heads=4, kv_heads=1, head_dim=8, experts=8, top_k=4,
                               intermediate=64, vocab=128, sliding_window=3, yarn_factor=4.0, original_max=32,
                               max_pos=128, truncate=True,
                               layer_types=["sliding_attention", "full_attention", "sliding_attention"])
    settings = {"r": 4, "lora_alpha": 16, "use_rslora": True, "target_modules": "all-linear",
                "target_parameters": ["0.mlp.experts.gate_up_proj", "0.mlp.experts.down_proj",
                                      "2.mlp.experts.gate_up_proj"]}
    hp = {"lr": 3e-3, "betas": (0.85, 0.98), "eps": 1e-3, "weight_decay": 0.05, "max_grad_norm": 5.0,
          "scheduler": "cosine_with_min_lr", "warmup_steps": 1, "total_steps": 6, "min_lr_ratio": 0.1, "steps": 5}
    gen = torch.Generator().manual_seed(8765)
    packed = [[5, 7, 4], [10, 6]]
    inputs = ref.random_inputs(gen, kwargs["vocab_size"], 2, 16, packed=packed)
    return write_case(os.path.join(root, "lora-experts"), kwargs, 8765, settings, hp, "packed", inputs,
                               packed=packed, base_model_name="tuna-fixture/lora-experts")


def report(name, record, meta):
    print(f"{name}: loss {meta['loss']:.6f} over {meta['tokens']} tokens; LoRA moves logits by "
          f"{meta['lora_effect_on_logits']:.2e} (rel); {len(record['grads'])} adapter tensors")
    print(f"  losses {[round(x, 6) for x in meta['losses']]}")
    print(f"  lrs {meta['lrs']}  grad norms {[round(x, 5) for x in meta['grad_norms']]} "
          f"(max_grad_norm {meta['max_grad_norm']}; clipped at steps {meta['clipped_steps']})")
    noise = meta["fp32_vs_fp64"]
    print("  fp32 vs fp64 PyTorch: " + ", ".join(f"{k} {v:.1e}" for k, v in noise.items()))


def sanity(name, meta):
    """The fixtures must exercise what they claim to."""
    steps = meta["steps"]
    assert meta["clipped_steps"], f"{name}: max_grad_norm never clips"
    if name == "lora-attn":
        assert meta["clipped_steps"] == list(range(steps)), f"{name}: should clip every step"
    else:
        assert len(meta["clipped_steps"]) < steps, f"{name}: should leave some steps unclipped"
    assert meta["lrs"][0] == 0.0 and len(set(meta["lrs"])) == steps, f"{name}: warmup/decay not visible in the lrs"
    assert max(meta["fp32_vs_fp64"].values()) < 1e-5, f"{name}: ill-conditioned (fp32 vs fp64 {meta['fp32_vs_fp64']})"


def dir_size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def compare_tree(name, new_root, old_root):
    """Staleness of one fixture: what differs between new_root/name and old_root/name (empty:
    up to date). Checkpoints, adapters and configs must be byte-identical (they come from
    seeded draws); computed floats within FLOAT_CHECK of their scale: another CPU's kernels
    round differently, and after 5 Adam steps that alone moves the final weights by up to
    ~5e-6 (the fp32-vs-fp64 spread), while a real change (seed, setting, library behaviour)
    moves them by far more."""
    stale = []
    new, old = os.path.join(new_root, name), os.path.join(old_root, name)
    files = sorted(os.path.relpath(os.path.join(d, f), new) for d, _, fs in os.walk(new) for f in fs)
    old_files = sorted(os.path.relpath(os.path.join(d, f), old) for d, _, fs in os.walk(old) for f in fs) \
        if os.path.isdir(old) else []
    if files != old_files:
        return [f"{name}: files {sorted(set(files) ^ set(old_files))}"]
    for rel in files:
        a, b = os.path.join(new, rel), os.path.join(old, rel)
        if rel == "reference.safetensors":
            ta, tb = load_file(a), load_file(b)
            if sorted(ta) != sorted(tb):
                stale.append(f"{name}/{rel}: tensor names")
                continue
            for k in ta:
                if ta[k].dtype != tb[k].dtype or ta[k].shape != tb[k].shape:
                    stale.append(f"{name}/{rel}: {k} dtype/shape")
                elif ta[k].is_floating_point():
                    if lora_ref.max_rel(ta[k], tb[k]) > FLOAT_CHECK:
                        stale.append(f"{name}/{rel}: {k} values")
                elif not torch.equal(ta[k], tb[k]):
                    stale.append(f"{name}/{rel}: {k} values")
        elif rel == "lora_reference.json":
            ja, jb = json.load(open(a)), json.load(open(b))
            ja.pop("fp32_vs_fp64"), jb.pop("fp32_vs_fp64")
            if not close_json(ja, jb):
                stale.append(f"{name}/{rel}")
        else:
            with open(a, "rb") as fa, open(b, "rb") as fb:
                if fa.read() != fb.read():
                    stale.append(f"{name}/{rel}")
    return stale


def close_json(a, b):
    if isinstance(a, dict):
        return isinstance(b, dict) and sorted(a) == sorted(b) and all(close_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(close_json(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= FLOAT_CHECK * max(abs(a), abs(b), 1e-12)
    return a == b


CASES = {"lora-attn": case_attn, "lora-experts": case_experts}


def make(root, name):
    """Writes fixture `name` under `root`, prints what it holds; returns its lora_reference.json."""
    shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    record, meta = CASES[name](root)
    report(name, record, meta)
    print(f"  {name}/: {dir_size(os.path.join(root, name)) / 1024:.0f} KiB")
    return meta


if __name__ == "__main__":
    for case in CASES:
        sanity(case, make(FIXTURES, case))
