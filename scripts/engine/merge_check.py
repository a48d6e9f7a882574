#!/usr/bin/env python3
"""End-to-end check of `tuna merge`: the checkpoints it writes load in transformers without
PEFT and compute base + adapter.

  1. `tuna init-model` writes a small gpt-oss (MXFP4 experts, BF16 elsewhere, tokenizer.json);
     transformers loads it (gptoss_ref.load_reference: fp32, eager, dequantized experts).
  2. PEFT 0.21.2 puts a LoRA on it (q/k/v/o_proj of every layer + gate_up_proj and down_proj
     of one layer's experts, r=4, alpha=8, random non-zero A and B) and saves it; the
     reference is PeftModel's fp32 logits on a padded batch of 2 rows.
  3. `tuna merge --dtype f32 --experts f32`: plain GptOssForCausalLM.from_pretrained loads it
     with no missing/unexpected keys; logits max rel err < 1e-4; every merged weight against
     PEFT's own merge_and_unload (names the tensor if one is wrong); untouched tensors copied.
  4. `--dtype bf16 --experts bf16`: same, logits error is bf16 rounding (< 2e-2).
     Logits are compared where the merged model routes every token to the reference's top-k
     experts: a near tie in a router can flip under rounding and change that token by O(1)
     without anything being wrong (each flip is printed with its router margin).
  5. defaults (bf16 attention, experts re-quantized to MXFP4): loads via Mxfp4Config; the
     untouched layer's *_blocks/*_scales are the base's bytes, the merged layer's differ; the
     logits error (MXFP4 is lossy) is reported and must be finite. `tuna eval --text` on that
     very checkpoint equals transformers' loss on the same windows (rel err < 1e-4).
  6. bad input: --out equal to --model (also spelled differently) fails with a clear message
     and leaves the base alone; an adapter tensor with a wrong rank fails naming the tensor.

Every measured error is printed. Exit 1 on any failure.

    python3 -m scripts.engine.merge_check [--tuna .build/debug/tuna] [--seed N] [--keep]
"""
import argparse
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import torch
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import GptOssForCausalLM

from scripts.engine import gptoss_ref as ref
from scripts.engine import lora_ref
from scripts.lib.checks import VOCAB, add_seed, add_tuna, seeded, tuna_path

F32_TOL, BF16_TOL, EVAL_TOL = 1e-4, 2e-2, 1e-4
TEXT = ("The quick brown fox jumps over the lazy dog. 1234567 + 89 = 1234656.\n"
        "Le renard brun saute par-dessus le chien paresseux.\n"
        "def add(a, b):\n    return a + b  # sum\n") * 3

failures = []


def check(ok, what):
    print(f"  {'ok' if ok else 'FAILED'}: {what}", flush=True)
    if not ok:
        failures.append(what)
    return ok


def run(cmd, expect_ok=True):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if expect_ok and p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def max_rel(got, want):
    return lora_ref.max_rel(got, want)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def raw_tensors(path):
    """{name: (dtype string, shape, raw bytes)} straight from a safetensors file."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}


@torch.no_grad()
def logits_of(model, inputs):
    return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False).logits.float()


@torch.no_grad()
def routed_logits(model, inputs):
    """(logits, per layer (router logits [B*T, E], chosen experts [B*T, k] sorted)) of one forward."""
    layers = model.get_base_model().model.layers if isinstance(model, PeftModel) else model.model.layers
    routes = []
    hooks = [layer.mlp.router.register_forward_hook(lambda mod, args, out: routes.append((out[0].float(), out[2].sort(-1).values)))
             for layer in layers]
    try:
        logits = logits_of(model, inputs)
    finally:
        for h in hooks:
            h.remove()
    return logits, routes


def routing_aware_error(label, got, got_routes, want, want_routes, k):
    """Max rel logits error over the positions the top-k routing cannot explain.

    A merged model whose weights differ from base + adapter by rounding (bf16, MXFP4) can send
    a token whose router logits nearly tie to another expert: that token's output then differs
    by O(1) although nothing is wrong with the merge. Such a token, and (through attention) every
    later position of its row, is left out of the bounded error; each flip is printed with the
    reference's router margin (k-th minus (k+1)-th logit) to show it is a near tie. Returns
    (error over the kept positions, error over all positions, fraction of positions kept)."""
    b, t, _ = want.shape
    keep = torch.ones(b, t, dtype=torch.bool)
    for layer, ((ref_logits, ref_idx), (_, got_idx)) in enumerate(zip(want_routes, got_routes)):
        for tok in (ref_idx != got_idx).any(-1).nonzero().flatten().tolist():
            row, pos = divmod(tok, t)
            top = ref_logits[tok].topk(k + 1).values
            print(f"    {label}: layer {layer} routes row {row} position {pos} to experts {got_idx[tok].tolist()}, "
                  f"the reference to {ref_idx[tok].tolist()} (reference router margin {(top[k - 1] - top[k]).item():.3e})")
            keep[row, pos:] = False
    scale = want.abs().max().item()
    kept = (got - want).abs()[keep].max().item() / scale if keep.any() else float("nan")
    return kept, max_rel(got, want), keep.float().mean().item()


def load_dense(directory):
    """A dense-expert merged checkpoint, the plain way: no quantization config, fp32, eager."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, info = GptOssForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager",
                                                        output_loading_info=True)
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        check(not info.get(key), f"{os.path.basename(directory)}: {key} {sorted(info.get(key) or [])}")
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    check(dtypes == ["torch.float32"], f"{os.path.basename(directory)}: parameter dtypes {dtypes}")
    loud = [str(w.message) for w in caught if "weight" in str(w.message).lower() or "key" in str(w.message).lower()]
    check(not loud, f"{os.path.basename(directory)}: no loading warnings about weights/keys {loud}")
    return model.eval()


def mxfp4_reference(w):
    """Re-quantization by the rule LoRAMerge documents (MXFP4.quantize), written independently:
    w [E, in, out] fp32 -> (blocks [E, out, in/32, 16], scales [E, out, in/32]) U8. Per block of
    32 inputs, the smallest 2^s with max|x| <= 6 * 2^s (s clamped to -127..126, byte s + 127),
    x / 2^s rounded to the nearest E2M1 value with ties to the even code, sign kept (also for 0)."""
    e, n_in, n_out = w.shape
    x = w.transpose(1, 2).reshape(e, n_out, n_in // 32, 32).double()
    amax = x.abs().amax(-1)
    s = torch.ceil(torch.log2(amax / 6))
    s = torch.where(amax > 6 * torch.exp2(s), s + 1, s)
    s = torch.where(amax <= 6 * torch.exp2(s - 1), s - 1, s)
    s = torch.where(amax == 0, torch.full_like(s, -127.0), s).clamp(-127, 126)
    y = (x / torch.exp2(s)[..., None]).abs()
    grid = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64)
    parity = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1], dtype=torch.float64)
    code = ((y[..., None] - grid).abs() + 1e-12 * parity).argmin(-1)  # a tie goes to the even code
    code = code + 8 * torch.signbit(x).long()
    blocks = (code[..., 0::2] | (code[..., 1::2] << 4)).to(torch.uint8)  # low nibble = even input
    return blocks.contiguous(), (s + 127).to(torch.uint8).contiguous()


def main():
    ap = argparse.ArgumentParser()
    add_tuna(ap)
    add_seed(ap)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.tuna = tuna_path(args.tuna)
    seed, rng = seeded(args, "engine.merge_check")
    work = tempfile.mkdtemp(prefix="tuna-merge-")
    d = lambda *p: os.path.join(work, *p)  # noqa: E731
    tuna = args.tuna

    # 1. the base: tuna init-model, loaded by transformers
    run([tuna, "init-model", "--out", d("model"), "--vocabulary", VOCAB, "--layers", "2", "--seed", str(seed % 2**63)])
    base_file = d("model", "model.safetensors")
    base_tensors = load_file(base_file)
    base_raw = raw_tensors(base_file)
    base_hash = sha256(base_file)
    print("base model:", flush=True)
    model = ref.load_reference(d("model"), base_tensors)  # asserts experts == convert_moe_packed_tensors(bytes)
    cfg = model.config
    layers, experts = cfg.num_hidden_layers, cfg.num_local_experts

    # 2. the adapter: PEFT on transformers' model, random non-zero A and B, saved
    merged_layer = rng.randrange(layers)
    untouched = [layer for layer in range(layers) if layer != merged_layer]
    settings = {"r": 4, "lora_alpha": 8, "target_modules": list(lora_ref.ATTENTION_MODULES),
                "target_parameters": [f"{merged_layer}.mlp.experts.gate_up_proj", f"{merged_layer}.mlp.experts.down_proj"]}
    print(f"adapter: r=4 alpha=8 on q/k/v/o_proj of every layer and layer {merged_layer}'s experts "
          f"(gate_up_proj, down_proj)", flush=True)
    base_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    peft_model = get_peft_model(model, lora_ref.lora_config(settings))
    lora_ref.randomize_adapter(peft_model, seed, settings)
    peft_model.eval()
    peft_model.save_pretrained(d("adapter"))
    saved = load_file(d("adapter", "adapter_model.safetensors"))
    check(all(".lora_A." in k or ".lora_B." in k for k in saved) and len(saved) == 2 * (4 * layers + 2),
          f"PEFT saved {len(saved)} LoRA tensors (4 attention modules x {layers} layers + 2 expert parameters, A and B)")
    check(all((t != 0).all().item() for t in saved.values()), "every entry of every saved A and B is non-zero")

    gen = torch.Generator().manual_seed(seed)
    t = rng.randint(12, 24)
    lengths = [t, rng.randint(4, t - 3)]
    inputs = ref.random_inputs(gen, cfg.vocab_size, 2, t, lengths=lengths)
    print(f"inputs: padded batch of 2 rows, lengths {lengths}", flush=True)
    want, want_routes = routed_logits(peft_model, inputs)
    top_k = cfg.num_experts_per_tok
    with peft_model.disable_adapter():
        base_logits = logits_of(peft_model, inputs)
    change = max_rel(want, base_logits)
    check(change > 0.05, f"the adapter changes the logits: max rel diff PEFT vs base {change:.3e} (> 5e-2)")

    # PEFT's own merge of the same adapter: per-tensor reference for the merged weights
    peft_merged = copy.deepcopy(peft_model).merge_and_unload()
    want_weights = {k: v.detach().float() for k, v in peft_merged.state_dict().items()}
    check(max_rel(logits_of(peft_merged, inputs), want) < 1e-5,
          f"PEFT merge_and_unload logits vs PeftModel: {max_rel(logits_of(peft_merged, inputs), want):.3e}")
    merged_names = sorted([f"model.layers.{layer}.self_attn.{m}.weight" for layer in range(layers)
                           for m in lora_ref.ATTENTION_MODULES]
                          + [f"model.layers.{merged_layer}.mlp.experts.{p}" for p in ref.EXPERT_PROJS])
    for n in merged_names:  # so that a zero error below cannot be a comparison of two unmerged weights
        delta = max_rel(want_weights[n], base_weights[n])
        check(delta > 1e-2, f"PEFT merge_and_unload changes {n}: max rel change {delta:.3e} (> 1e-2)")

    def check_copied(out_raw, label):
        """Everything the adapter does not touch is the base's bytes (dtype, shape and data)."""
        skip = {n for n in base_raw if ".self_attn." in n and n.endswith("_proj.weight")} | \
               {n for n in base_raw if ".mlp.experts." in n and not n.endswith("_bias")}
        bad = [n for n in base_raw if n not in skip and out_raw.get(n) != base_raw[n]]
        check(not bad, f"{label}: the {len(base_raw) - len(skip)} untouched non-expert tensors are the base's bytes {bad}")

    def compare_merge(directory, label, tol):
        out_raw = raw_tensors(os.path.join(directory, "model.safetensors"))
        check_copied(out_raw, label)
        dtype = "F32" if "f32" in label else "BF16"
        stored = {n: out_raw[n][0] for n in merged_names}
        check(set(stored.values()) == {dtype}, f"{label}: merged tensors stored as {sorted(set(stored.values()))}")
        dense = {n: out_raw.get(n, (None, None))[1] for n in out_raw if ".mlp.experts." in n and not n.endswith("_bias")}
        want_dense = {f"model.layers.{layer}.mlp.experts.{p}": [experts] + list(want_weights[f"model.layers.{layer}.mlp.experts.{p}"].shape[1:])
                      for layer in range(layers) for p in ref.EXPERT_PROJS}
        check(dense == want_dense, f"{label}: every layer's experts dense [E, in, out], no *_blocks/*_scales")
        conf = json.load(open(os.path.join(directory, "config.json")))
        check("quantization_config" not in conf, f"{label}: config.json has no quantization_config")
        m = load_dense(directory)
        got_weights = m.state_dict()
        for n in merged_names:
            err = max_rel(got_weights[n].float(), want_weights[n])
            print(f"    {label} {n}: max rel err vs PEFT merge_and_unload {err:.3e}")
            check(err < (1e-6 if dtype == "F32" else 8e-3), f"{label} {n} within {'1e-6' if dtype == 'F32' else '8e-3'}")
        for layer in untouched:
            for p in ref.EXPERT_PROJS:
                n = f"model.layers.{layer}.mlp.experts.{p}"
                check(torch.equal(got_weights[n].float(), want_weights[n]),
                      f"{label} {n} (untouched) == transformers' dequantization of the base's MXFP4 exactly")
        got, routes = routed_logits(m, inputs)
        err, err_all, kept = routing_aware_error(label, got, routes, want, want_routes, top_k)
        print(f"  {label}: logits max rel err vs PEFT reference {err:.3e} (tolerance {tol:g}) over the {kept:.0%} of "
              f"positions routed as in the reference; over all positions {err_all:.3e}", flush=True)
        check(err < tol and kept >= 0.25, f"{label} logits within {tol:g} (on at least a quarter of the positions)")
        return m

    # 3. dense fp32
    print("merge --dtype f32 --experts f32:", flush=True)
    p = run([tuna, "merge", "--model", d("model"), "--adapter", d("adapter"), "--out", d("merged-f32"),
             "--dtype", "f32", "--experts", "f32"])
    print("    " + p.stdout.strip().replace("\n", "\n    "))
    f32_model = compare_merge(d("merged-f32"), "merged-f32", F32_TOL)

    # 4. dense bf16
    print("merge --dtype bf16 --experts bf16:", flush=True)
    p = run([tuna, "merge", "--model", d("model"), "--adapter", d("adapter"), "--out", d("merged-bf16"),
             "--dtype", "bf16", "--experts", "bf16"])
    print("    " + p.stdout.strip().replace("\n", "\n    "))
    compare_merge(d("merged-bf16"), "merged-bf16", BF16_TOL)

    # 5. defaults: bf16 attention, experts re-quantized to MXFP4
    print("merge (defaults: bf16 attention, MXFP4 experts):", flush=True)
    p = run([tuna, "merge", "--model", d("model"), "--adapter", d("adapter"), "--out", d("merged-mxfp4")])
    print("    " + p.stdout.strip().replace("\n", "\n    "))
    mx_dir = d("merged-mxfp4")
    mx_raw = raw_tensors(os.path.join(mx_dir, "model.safetensors"))
    check_copied(mx_raw, "merged-mxfp4")
    check(sorted(mx_raw) == sorted(base_raw), "merged-mxfp4: the base's tensor names exactly (experts as *_blocks/*_scales)")
    check(json.load(open(os.path.join(mx_dir, "config.json"))).get("quantization_config")
          == json.load(open(d("model", "config.json"))).get("quantization_config"), "merged-mxfp4: quantization_config kept")
    check({mx_raw[n][0] for n in merged_names if ".self_attn." in n} == {"BF16"}, "merged-mxfp4: attention stored BF16")
    for layer in range(layers):
        for proj in ref.EXPERT_PROJS:
            for part in ("_blocks", "_scales"):
                n = f"model.layers.{layer}.mlp.experts.{proj}{part}"
                same = mx_raw[n] == base_raw[n]
                if layer in untouched:
                    check(same, f"merged-mxfp4 {n} (untouched layer) byte-identical to the base")
                elif part == "_blocks":
                    differ = sum(a != b for a, b in zip(mx_raw[n][2], base_raw[n][2])) / len(base_raw[n][2])
                    check(not same and mx_raw[n][:2] == base_raw[n][:2],
                          f"merged-mxfp4 {n} (merged layer) differs from the base: {differ:.1%} of bytes, same dtype/shape")
    dense_f32 = load_file(d("merged-f32", "model.safetensors"))  # the very fp32 weights the MXFP4 merge quantizes
    for proj in ref.EXPERT_PROJS:
        n = f"model.layers.{merged_layer}.mlp.experts.{proj}"
        blocks, scales = mxfp4_reference(dense_f32[n])
        for part, t in (("_blocks", blocks), ("_scales", scales)):
            got_bytes = mx_raw[n + part]
            same = got_bytes[1] == list(t.shape) and got_bytes[2] == t.numpy().tobytes()
            mismatch = 0 if same else sum(a != b for a, b in zip(got_bytes[2], t.numpy().tobytes()))
            check(same, f"merged-mxfp4 {n}{part} == the documented quantization rule applied to merged-f32 "
                        f"({mismatch} of {t.numel()} bytes differ)")
    mx_tensors = load_file(os.path.join(mx_dir, "model.safetensors"))
    mx_model = ref.load_reference(mx_dir, mx_tensors)
    mx_weights = mx_model.state_dict()
    for proj in ref.EXPERT_PROJS:
        n = f"model.layers.{merged_layer}.mlp.experts.{proj}"
        abs_err = (mx_weights[n] - want_weights[n]).abs().max().item()
        print(f"    merged-mxfp4 {n}: MXFP4 re-quantization max abs err {abs_err:.3e}, "
              f"max rel err {max_rel(mx_weights[n], want_weights[n]):.3e} vs PEFT merge_and_unload")
    mx_logits, mx_routes = routed_logits(mx_model, inputs)
    err, err_all, kept = routing_aware_error("merged-mxfp4", mx_logits, mx_routes, want, want_routes, top_k)
    print(f"  merged-mxfp4: logits max rel err vs PEFT reference {err_all:.3e} over all positions, {err:.3e} over the "
          f"{kept:.0%} routed as in the reference (MXFP4 is lossy: reported, not bounded; the adapter itself moved "
          f"the logits by {change:.3e})", flush=True)
    check(torch.isfinite(mx_logits).all().item() and err_all == err_all, "merged-mxfp4 logits finite")

    # 5b. the native engine on that very merged checkpoint: tuna eval --text against transformers
    # (also on merged-f32: the engine reading dense [E, in, out] experts, against the plain load)
    check(os.path.exists(os.path.join(mx_dir, "tokenizer.json")), "merged-mxfp4 has tokenizer.json (copied by merge)")
    from tokenizers import Tokenizer
    hf_tok = Tokenizer.from_file(d("model", "tokenizer.json"))
    ids = hf_tok.encode(TEXT, add_special_tokens=False).ids
    tuna_ids = json.loads(subprocess.run([tuna, "tokenize", "--model", mx_dir], input=TEXT, capture_output=True,
                                         text=True, check=True).stdout)
    check(ids == tuna_ids, f"tokenizers and tuna tokenize give the same {len(ids)} ids")
    window = rng.randint(20, 48)
    text_file = d("text.txt")
    with open(text_file, "w", encoding="utf-8") as f:
        f.write(TEXT)
    for label, directory, hf_model in (("merged-mxfp4", mx_dir, mx_model), ("merged-f32", d("merged-f32"), f32_model)):
        got = json.loads(run([tuna, "eval", "--model", directory, "--text", text_file, "--max-seq-len", str(window),
                              "--json"]).stdout)
        total, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(ids), window):  # EvalCommand's --text windows: stride n, drop a window < 2
                w = ids[start:start + window]
                if len(w) < 2:
                    continue
                out = hf_model(input_ids=torch.tensor([w]), labels=torch.tensor([w]), use_cache=False)
                total += out.loss.item() * (len(w) - 1)
                count += len(w) - 1
        want_loss = total / count
        loss_err = abs(got["loss"] - want_loss) / abs(want_loss)
        print(f"  {label}: tuna eval {got['loss']:.7f} over {got['tokens']} tokens (windows of {window}), "
              f"transformers {want_loss:.7f} over {count}; relative error {loss_err:.2e} (tolerance {EVAL_TOL:g})", flush=True)
        check(loss_err < EVAL_TOL and got["tokens"] == count, f"tuna eval on {label} matches transformers")

    # 6. bad input
    print("bad input:", flush=True)
    for spelling in (d("model"), d("model") + "/", os.path.join(work, ".", "model"), os.path.join(work, "adapter", "..", "model")):
        p = run([tuna, "merge", "--model", d("model"), "--adapter", d("adapter"), "--out", spelling], expect_ok=False)
        msg = (p.stderr + p.stdout).strip()
        print(f"    --out {spelling!r}: exit {p.returncode}: {msg.splitlines()[0] if msg else ''}")
        check(p.returncode != 0 and "base checkpoint" in msg, f"merge --out {spelling!r} (the base) refused with a clear message")
    os.symlink(d("model"), d("model-link"))
    p = run([tuna, "merge", "--model", d("model"), "--adapter", d("adapter"), "--out", d("model-link")], expect_ok=False)
    msg = (p.stderr + p.stdout).strip()
    print(f"    --out a symlink to the base: exit {p.returncode}: {msg.splitlines()[0] if msg else ''}")
    check(p.returncode != 0 and "base checkpoint" in msg, "merge --out <symlink to the base> refused")
    check(sha256(base_file) == base_hash and sorted(os.listdir(d("model"))) == ["config.json", "model.safetensors", "tokenizer.json"],
          "the base checkpoint is unchanged after the refused merges")

    for victim, cut in ((f"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", 0),
                        (f"base_model.model.model.layers.{merged_layer}.mlp.experts.lora_B.weight", 1)):
        bad_dir = d("adapter-bad")
        shutil.rmtree(bad_dir, ignore_errors=True)
        shutil.copytree(d("adapter"), bad_dir)
        tensors = dict(saved)
        tensors[victim] = tensors[victim].narrow(cut, 0, tensors[victim].shape[cut] - (1 if cut == 0 else experts)).contiguous()
        save_file(tensors, os.path.join(bad_dir, "adapter_model.safetensors"), metadata={"format": "pt"})
        out_dir = d("merged-bad")
        p = run([tuna, "merge", "--model", d("model"), "--adapter", bad_dir, "--out", out_dir], expect_ok=False)
        msg = (p.stderr + p.stdout).strip()
        print(f"    {victim} shape {list(saved[victim].shape)} -> {list(tensors[victim].shape)}: exit {p.returncode}: "
              f"{msg.splitlines()[0] if msg else ''}")
        check(p.returncode != 0 and victim in msg, f"wrong-rank {victim.split('layers.')[1]} refused, naming the tensor")
        check(not os.path.exists(os.path.join(out_dir, "model.safetensors")), "no checkpoint written for the bad adapter")

    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"merge_check: {'FAILED (' + str(len(failures)) + ')' if failures else 'passed'}")
    for f in failures:
        print(f"  failed: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
