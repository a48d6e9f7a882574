"""`tuna merge`: the checkpoints it writes load in transformers without PEFT and compute
base + adapter.

  1. `tuna init-model` writes a small gpt-oss (MXFP4 experts, BF16 elsewhere, tokenizer.json);
     transformers loads it (gptoss.load_reference: fp32, eager, dequantized experts).
  2. PEFT puts a LoRA on it (q/k/v/o_proj of every layer + gate_up_proj and down_proj of one
     random layer's experts, r=4, alpha=8, random non-zero A and B) and saves it; the reference
     is PeftModel's fp32 logits on a padded batch of 2 rows, PEFT's merge_and_unload the
     per-tensor reference (so a wrong tensor is named).
  3. `--dtype f32 --experts f32`: plain GptOssForCausalLM.from_pretrained loads it with no
     missing/unexpected keys; merged weights < 1e-6 off PEFT's merge; logits < 1e-4.
  4. `--dtype bf16 --experts bf16`: the same, within bf16 rounding (weights 8e-3, logits 2e-2).
     Logits are compared where the merged model routes every token to the reference's top-k
     experts (reference/routing.py: a near tie can flip under rounding; each flip is printed).
  5. defaults (bf16 attention, experts re-quantized to MXFP4): the untouched layer's bytes are
     the base's, the merged layer's equal the documented quantization rule applied to the
     merged-f32 weights; logits reported, required finite. `tuna eval --text` on that very
     checkpoint (and on merged-f32) equals transformers' loss on the same windows (< 1e-4).
  6. bad input: --out naming the base (also spelled differently, or a symlink) is refused and the
     base left alone; an adapter tensor with a wrong rank is refused, naming the tensor.
"""
import copy
import json
import os
import shutil
import subprocess
from types import SimpleNamespace

import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file, save_file

from reference import gptoss as ref
from reference import lora as lora_ref
from reference.checkpoints import load_dense, mxfp4_quantize, raw_tensors, sha256
from reference.lora import max_rel
from reference.routing import logits_of, routed_logits, routing_aware_error

F32_TOL, BF16_TOL, EVAL_TOL = 1e-4, 2e-2, 1e-4
TEXT = ("The quick brown fox jumps over the lazy dog. 1234567 + 89 = 1234656.\n"
        "Le renard brun saute par-dessus le chien paresseux.\n"
        "def add(a, b):\n    return a + b  # sum\n") * 3


def run(cmd, expect_ok=True):
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert not expect_ok or p.returncode == 0, f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture(scope="module")
def m(tiny_model, seed, rng):
    """Sections 1 and 2: the base, the PEFT adapter, the reference logits and PEFT's merge.
    The merge's work happens beside the base (the refusals spell it through a sibling)."""
    base = tiny_model(layers=2, seed=seed % 2**63)
    work = os.path.dirname(base)
    m = SimpleNamespace(base=base, d=lambda *p: os.path.join(work, *p))
    m.base_file = os.path.join(base, "model.safetensors")
    m.base_raw, m.base_hash = raw_tensors(m.base_file), sha256(m.base_file)
    print("base model:", flush=True)
    model = ref.load_reference(base, load_file(m.base_file))  # asserts experts == convert_moe_packed_tensors(bytes)
    cfg = model.config
    m.layers, m.experts, m.top_k = cfg.num_hidden_layers, cfg.num_local_experts, cfg.num_experts_per_tok

    m.merged_layer = rng.randrange(m.layers)
    m.untouched = [layer for layer in range(m.layers) if layer != m.merged_layer]
    settings = {"r": 4, "lora_alpha": 8, "target_modules": list(lora_ref.ATTENTION_MODULES),
                "target_parameters": [f"{m.merged_layer}.mlp.experts.gate_up_proj", f"{m.merged_layer}.mlp.experts.down_proj"]}
    print(f"adapter: r=4 alpha=8 on q/k/v/o_proj of every layer and layer {m.merged_layer}'s experts "
          f"(gate_up_proj, down_proj)", flush=True)
    m.base_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    m.peft_model = get_peft_model(model, lora_ref.lora_config(settings))
    lora_ref.randomize_adapter(m.peft_model, seed, settings)
    m.peft_model.eval()
    m.peft_model.save_pretrained(m.d("adapter"))
    m.saved = load_file(m.d("adapter", "adapter_model.safetensors"))

    gen = torch.Generator().manual_seed(seed)
    t = rng.randint(12, 24)
    lengths = [t, rng.randint(4, t - 3)]
    m.inputs = ref.random_inputs(gen, cfg.vocab_size, 2, t, lengths=lengths)
    print(f"inputs: padded batch of 2 rows, lengths {lengths}", flush=True)
    m.want, m.want_routes = routed_logits(m.peft_model, m.inputs)
    m.peft_merged = copy.deepcopy(m.peft_model).merge_and_unload()
    m.want_weights = {k: v.detach().float() for k, v in m.peft_merged.state_dict().items()}
    m.merged_names = sorted([f"model.layers.{layer}.self_attn.{p}.weight" for layer in range(m.layers)
                             for p in lora_ref.ATTENTION_MODULES]
                            + [f"model.layers.{m.merged_layer}.mlp.experts.{p}" for p in ref.EXPERT_PROJS])
    m.window = rng.randint(20, 48)
    m.merges = {}
    return m


@pytest.fixture(scope="module")
def merged(m, tuna):
    """`merged(label, *flags)`: `tuna merge` of the base and adapter into DIR/label, once."""

    def merge(label, *flags):
        if label not in m.merges:
            print(f"merge {' '.join(flags) or '(defaults: bf16 attention, MXFP4 experts)'}:", flush=True)
            p = run([tuna, "merge", "--model", m.base, "--adapter", m.d("adapter"), "--out", m.d(label), *flags])
            print("    " + p.stdout.strip().replace("\n", "\n    "))
            m.merges[label] = m.d(label)
        return m.merges[label]

    return merge


def test_the_adapter_is_a_real_change(m, checks):
    checks.true(f"PEFT saved {len(m.saved)} LoRA tensors (4 attention modules x {m.layers} layers + 2 expert parameters, A and B)",
                all(".lora_A." in k or ".lora_B." in k for k in m.saved) and len(m.saved) == 2 * (4 * m.layers + 2))
    checks.true("every entry of every saved A and B is non-zero", all((t != 0).all().item() for t in m.saved.values()))
    with m.peft_model.disable_adapter():
        change = max_rel(m.want, logits_of(m.peft_model, m.inputs))
    checks.true(f"the adapter changes the logits: max rel diff PEFT vs base {change:.3e} (> 5e-2)", change > 0.05)
    err = max_rel(logits_of(m.peft_merged, m.inputs), m.want)
    checks.true(f"PEFT merge_and_unload logits vs PeftModel: {err:.3e}", err < 1e-5)
    for n in m.merged_names:  # so that a zero error below cannot be a comparison of two unmerged weights
        delta = max_rel(m.want_weights[n], m.base_weights[n])
        checks.true(f"PEFT merge_and_unload changes {n}: max rel change {delta:.3e} (> 1e-2)", delta > 1e-2)


def check_copied(m, checks, out_raw, label):
    """Everything the adapter does not touch is the base's bytes (dtype, shape and data)."""
    skip = {n for n in m.base_raw if ".self_attn." in n and n.endswith("_proj.weight")} | \
           {n for n in m.base_raw if ".mlp.experts." in n and not n.endswith("_bias")}
    bad = [n for n in m.base_raw if n not in skip and out_raw.get(n) != m.base_raw[n]]
    checks.true(f"{label}: the {len(m.base_raw) - len(skip)} untouched non-expert tensors are the base's bytes {bad}", not bad)


@pytest.mark.parametrize("label, dtype, tol", [("merged-f32", "f32", F32_TOL), ("merged-bf16", "bf16", BF16_TOL)])
def test_dense_merge_loads_plainly_and_computes_base_plus_adapter(m, merged, checks, label, dtype, tol):
    directory = merged(label, "--dtype", dtype, "--experts", dtype)
    out_raw = raw_tensors(os.path.join(directory, "model.safetensors"))
    check_copied(m, checks, out_raw, label)
    stored = {out_raw[n][0] for n in m.merged_names}
    checks.true(f"{label}: merged tensors stored as {sorted(stored)}", stored == {dtype.upper()})
    dense = {n: out_raw.get(n, (None, None))[1] for n in out_raw if ".mlp.experts." in n and not n.endswith("_bias")}
    want_dense = {f"model.layers.{layer}.mlp.experts.{p}":
                  [m.experts] + list(m.want_weights[f"model.layers.{layer}.mlp.experts.{p}"].shape[1:])
                  for layer in range(m.layers) for p in ref.EXPERT_PROJS}
    checks.true(f"{label}: every layer's experts dense [E, in, out], no *_blocks/*_scales", dense == want_dense)
    conf = json.load(open(os.path.join(directory, "config.json")))
    checks.true(f"{label}: config.json has no quantization_config", "quantization_config" not in conf)
    model = load_dense(directory, checks)
    got_weights = model.state_dict()
    weight_tol = "1e-6" if dtype == "f32" else "8e-3"
    for n in m.merged_names:
        err = max_rel(got_weights[n].float(), m.want_weights[n])
        print(f"    {label} {n}: max rel err vs PEFT merge_and_unload {err:.3e}")
        checks.true(f"{label} {n} within {weight_tol}", err < float(weight_tol))
    for layer in m.untouched:
        for p in ref.EXPERT_PROJS:
            n = f"model.layers.{layer}.mlp.experts.{p}"
            checks.true(f"{label} {n} (untouched) == transformers' dequantization of the base's MXFP4 exactly",
                        torch.equal(got_weights[n].float(), m.want_weights[n]))
    got, routes = routed_logits(model, m.inputs)
    err, err_all, kept = routing_aware_error(label, got, routes, m.want, m.want_routes, m.top_k)
    print(f"  {label}: logits max rel err vs PEFT reference {err:.3e} (tolerance {tol:g}) over the {kept:.0%} of "
          f"positions routed as in the reference; over all positions {err_all:.3e}", flush=True)
    checks.true(f"{label} logits within {tol:g} (on at least a quarter of the positions)", err < tol and kept >= 0.25)


def test_mxfp4_merge_requantizes_only_the_merged_layer(m, merged, checks):
    mx_dir = merged("merged-mxfp4")
    mx_raw = raw_tensors(os.path.join(mx_dir, "model.safetensors"))
    check_copied(m, checks, mx_raw, "merged-mxfp4")
    checks.true("merged-mxfp4: the base's tensor names exactly (experts as *_blocks/*_scales)", sorted(mx_raw) == sorted(m.base_raw))
    checks.true("merged-mxfp4: quantization_config kept", json.load(open(os.path.join(mx_dir, "config.json"))).get("quantization_config")
                == json.load(open(os.path.join(m.base, "config.json"))).get("quantization_config"))
    checks.true("merged-mxfp4: attention stored BF16", {mx_raw[n][0] for n in m.merged_names if ".self_attn." in n} == {"BF16"})
    for layer in range(m.layers):
        for proj in ref.EXPERT_PROJS:
            for part in ("_blocks", "_scales"):
                n = f"model.layers.{layer}.mlp.experts.{proj}{part}"
                same = mx_raw[n] == m.base_raw[n]
                if layer in m.untouched:
                    checks.true(f"merged-mxfp4 {n} (untouched layer) byte-identical to the base", same)
                elif part == "_blocks":
                    differ = sum(a != b for a, b in zip(mx_raw[n][2], m.base_raw[n][2])) / len(m.base_raw[n][2])
                    checks.true(f"merged-mxfp4 {n} (merged layer) differs from the base: {differ:.1%} of bytes, same dtype/shape",
                                not same and mx_raw[n][:2] == m.base_raw[n][:2])
    # the very fp32 weights the MXFP4 merge quantizes
    dense_f32 = load_file(os.path.join(merged("merged-f32", "--dtype", "f32", "--experts", "f32"), "model.safetensors"))
    for proj in ref.EXPERT_PROJS:
        n = f"model.layers.{m.merged_layer}.mlp.experts.{proj}"
        blocks, scales = mxfp4_quantize(dense_f32[n])
        for part, t in (("_blocks", blocks), ("_scales", scales)):
            got_bytes = mx_raw[n + part]
            same = got_bytes[1] == list(t.shape) and got_bytes[2] == t.numpy().tobytes()
            mismatch = 0 if same else sum(a != b for a, b in zip(got_bytes[2], t.numpy().tobytes()))
            checks.true(f"merged-mxfp4 {n}{part} == the documented quantization rule applied to merged-f32 "
                        f"({mismatch} of {t.numel()} bytes differ)", same)
    mx_model = ref.load_reference(mx_dir, load_file(os.path.join(mx_dir, "model.safetensors")))
    mx_weights = mx_model.state_dict()
    for proj in ref.EXPERT_PROJS:
        n = f"model.layers.{m.merged_layer}.mlp.experts.{proj}"
        abs_err = (mx_weights[n] - m.want_weights[n]).abs().max().item()
        print(f"    merged-mxfp4 {n}: MXFP4 re-quantization max abs err {abs_err:.3e}, "
              f"max rel err {max_rel(mx_weights[n], m.want_weights[n]):.3e} vs PEFT merge_and_unload")
    mx_logits, mx_routes = routed_logits(mx_model, m.inputs)
    err, err_all, kept = routing_aware_error("merged-mxfp4", mx_logits, mx_routes, m.want, m.want_routes, m.top_k)
    print(f"  merged-mxfp4: logits max rel err vs PEFT reference {err_all:.3e} over all positions, {err:.3e} over the "
          f"{kept:.0%} routed as in the reference (MXFP4 is lossy: reported, not bounded)", flush=True)
    checks.true("merged-mxfp4 logits finite", torch.isfinite(mx_logits).all().item() and err_all == err_all)


@pytest.fixture(scope="module")
def ids(m):
    """TEXT's ids from `tokenizers` with the base's tokenizer.json."""
    from tokenizers import Tokenizer
    return Tokenizer.from_file(os.path.join(m.base, "tokenizer.json")).encode(TEXT, add_special_tokens=False).ids


def test_mxfp4_merge_keeps_the_tokenizer(m, tuna, merged, ids, checks):
    mx_dir = merged("merged-mxfp4")
    checks.true("merged-mxfp4 has tokenizer.json (copied by merge)", os.path.exists(os.path.join(mx_dir, "tokenizer.json")))
    tuna_ids = json.loads(subprocess.run([tuna, "tokenize", "--model", mx_dir], input=TEXT, capture_output=True,
                                         text=True, check=True).stdout)
    checks.true(f"tokenizers and tuna tokenize give the same {len(ids)} ids", ids == tuna_ids)


@pytest.mark.parametrize("label, flags", [("merged-mxfp4", ()), ("merged-f32", ("--dtype", "f32", "--experts", "f32"))])
def test_tuna_eval_on_the_merged_checkpoint_matches_transformers(m, tuna, merged, ids, label, flags):
    """The native engine on the merged checkpoint (merged-f32: reading dense [E, in, out] experts)."""
    directory = merged(label, *flags)
    hf_model = ref.load_reference(directory) if label == "merged-mxfp4" else load_dense(directory)
    text_file = m.d("text.txt")
    with open(text_file, "w", encoding="utf-8") as f:
        f.write(TEXT)
    got = json.loads(run([tuna, "eval", "--model", directory, "--text", text_file, "--max-seq-len", str(m.window),
                          "--json"]).stdout)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids), m.window):  # EvalCommand's --text windows: stride n, drop a window < 2
            w = ids[start:start + m.window]
            if len(w) < 2:
                continue
            out = hf_model(input_ids=torch.tensor([w]), labels=torch.tensor([w]), use_cache=False)
            total += out.loss.item() * (len(w) - 1)
            count += len(w) - 1
    want_loss = total / count
    loss_err = abs(got["loss"] - want_loss) / abs(want_loss)
    print(f"  {label}: tuna eval {got['loss']:.7f} over {got['tokens']} tokens (windows of {m.window}), "
          f"transformers {want_loss:.7f} over {count}; relative error {loss_err:.2e} (tolerance {EVAL_TOL:g})", flush=True)
    assert loss_err < EVAL_TOL and got["tokens"] == count, f"tuna eval on {label}: rel err {loss_err:.2e}, tokens {got['tokens']} != {count}"


def test_out_naming_the_base_is_refused(m, tuna, checks):
    d = m.d
    spellings = [d("model"), d("model") + "/", os.path.join(d(), ".", "model"), os.path.join(d(), "adapter", "..", "model")]
    os.symlink(d("model"), d("model-link"))
    for spelling in spellings + [d("model-link")]:
        p = run([tuna, "merge", "--model", d("model"), "--adapter", d("adapter"), "--out", spelling], expect_ok=False)
        msg = (p.stderr + p.stdout).strip()
        print(f"    --out {spelling!r}: exit {p.returncode}: {msg.splitlines()[0] if msg else ''}")
        checks.true(f"merge --out {spelling!r} (the base) refused with a clear message", p.returncode != 0 and "base checkpoint" in msg)
    checks.true("the base checkpoint is unchanged after the refused merges", sha256(m.base_file) == m.base_hash
                and sorted(os.listdir(d("model"))) == ["config.json", "model.safetensors", "tokenizer.json"])


@pytest.mark.parametrize("victim, cut", [("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", 0),
                                         ("base_model.model.model.layers.{layer}.mlp.experts.lora_B.weight", 1)])
def test_wrong_rank_adapter_is_refused(m, tuna, checks, tmp_path, victim, cut):
    victim = victim.format(layer=m.merged_layer)
    bad_dir = str(tmp_path / "adapter-bad")
    shutil.copytree(m.d("adapter"), bad_dir)
    tensors = dict(m.saved)
    tensors[victim] = tensors[victim].narrow(cut, 0, tensors[victim].shape[cut] - (1 if cut == 0 else m.experts)).contiguous()
    save_file(tensors, os.path.join(bad_dir, "adapter_model.safetensors"), metadata={"format": "pt"})
    out_dir = str(tmp_path / "merged-bad")
    p = run([tuna, "merge", "--model", m.base, "--adapter", bad_dir, "--out", out_dir], expect_ok=False)
    msg = (p.stderr + p.stdout).strip()
    print(f"    {victim} shape {list(m.saved[victim].shape)} -> {list(tensors[victim].shape)}: exit {p.returncode}: "
          f"{msg.splitlines()[0] if msg else ''}")
    checks.true(f"wrong-rank {victim.split('layers.')[1]} refused, naming the tensor", p.returncode != 0 and victim in msg)
    checks.true("no checkpoint written for the bad adapter", not os.path.exists(os.path.join(out_dir, "model.safetensors")))
