"""`tuna generate` (the native engine's KV-cached decoding) against transformers' `generate`,
token for token, on a freshly drawn random gpt-oss.

  1. A random config (reference/gptoss.draw_config) with a small sliding window W and both
     layer kinds; three prompts of different lengths (one longer than 3W, one between W and 2W,
     one of 1-3 tokens), each continued greedily by more than 2W + 64 tokens: the sliding
     layers' cache is cut (to what a query can still see) while the full layers' keeps growing. transformers runs the three as one
     left-padded batch (fp32, eager attention and experts); tuna runs them two and one per batch
     (so a prompt's tokens cannot depend on its batch).
  2. Stop tokens: with one generated token as a stop id, every row ends at its first occurrence
     (kept, as transformers keeps its eos), finish "stop"; the others run to the limit.
  3. A LoRA adapter (PEFT, random non-zero A and B on q/k/v/o of every layer and one layer's
     experts): PeftModel.generate against `tuna generate --adapter`.
  4. `tuna merge --dtype f32 --experts f32` of that adapter: transformers on the merged files
     against `tuna generate` on them.
  5. Sampling: a seed gives the same tokens again, top-k 1 is greedy, another seed differs.

Tokens are compared while they agree; where they first differ, transformers' own logits must
show a near tie between the two tokens (gap < 1e-4 of the largest logit: fp32 rounding can pick
either), and that row is not compared further. Every such tie is printed.
"""
import json
import os
import subprocess

import pytest
import torch
from peft import PeftModel, get_peft_model
from transformers import GptOssForCausalLM

from reference import gptoss as ref
from reference import lora as lora_ref

TIE = 1e-4


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture(scope="module")
def g(tmp_path_factory, seed, rng):
    kwargs = ref.draw_config(rng)
    w = rng.randint(3, 6)
    layers = kwargs["num_hidden_layers"]
    kinds = ["sliding_attention", "full_attention"] + [rng.choice(["sliding_attention", "full_attention"])
                                                       for _ in range(layers - 2)]
    rng.shuffle(kinds)
    kwargs.update(sliding_window=w, layer_types=kinds)
    out = str(tmp_path_factory.mktemp("generate"))
    model_dir = os.path.join(out, "model")
    tensors = ref.write_checkpoint(model_dir, kwargs, seed)
    model = ref.load_reference(model_dir, tensors)
    gen = torch.Generator().manual_seed(seed)
    lengths = [rng.randint(3 * w + 1, 4 * w + 2), rng.randint(w + 1, 2 * w), rng.randint(1, 3)]
    rng.shuffle(lengths)
    prompts = [torch.randint(0, kwargs["vocab_size"], (n,), generator=gen).tolist() for n in lengths]
    # past 2W + 64 tokens the sliding layers' cache drops its oldest entries (KVCache): the
    # longest prompt's sequence gets there
    new = 2 * w + 64 + rng.randint(2, 8)
    print(f"config {kwargs}\nprompt lengths {lengths}, {new} new tokens, window {w}, layers {kinds}", flush=True)
    ids_file = os.path.join(out, "prompts.jsonl")
    with open(ids_file, "w") as f:
        f.writelines(json.dumps(p) + "\n" for p in prompts)
    return dict(dir=out, model_dir=model_dir, model=model, prompts=prompts, new=new, ids_file=ids_file,
                vocab=kwargs["vocab_size"], layers=layers)


@torch.no_grad()
def hf_generate(model, prompts, new, eos=None):
    """transformers' greedy generate on the prompts as one left-padded batch: (new tokens per
    row, with the eos kept and the padding after it cut; per-step logits [B, steps, V])."""
    ids, mask = ref.left_padded(prompts)
    t = ids.shape[1]
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=new, min_new_tokens=0,
                         eos_token_id=eos, pad_token_id=0, use_cache=True, return_dict_in_generate=True, output_logits=True)
    rows = []
    for b in range(len(prompts)):
        row = out.sequences[b, t:].tolist()
        if eos is not None and eos in row:
            row = row[:row.index(eos) + 1]
        rows.append(row)
    return rows, torch.stack(out.logits, 1).float()


def tuna_generate(tuna, model_dir, ids_file, new, *flags):
    p = run([tuna, "generate", "--model", model_dir, "--prompt-ids", ids_file, "--max-new-tokens", str(new),
             "--batch-size", "2", "--json", *flags])
    return [json.loads(line) for line in p.stdout.splitlines()]


def compare(checks, label, got, want, logits):
    """Row by row: equal tokens, or equal up to a near tie in transformers' logits."""
    compared = 0
    for b, (mine, theirs) in enumerate(zip(got, want)):
        diverged = next((s for s, (x, y) in enumerate(zip(mine, theirs)) if x != y), None)
        if diverged is None:
            compared += len(theirs)
            checks.true(f"{label} row {b}: {len(mine)} tokens, transformers' {len(theirs)}, all equal", mine == theirs)
            continue
        step = logits[b, diverged]
        gap = (step[theirs[diverged]] - step[mine[diverged]]).item() / step.abs().max().item()
        compared += diverged
        print(f"    {label} row {b}: step {diverged} tuna {mine[diverged]}, transformers {theirs[diverged]}, "
              f"relative logit gap {gap:.2e}", flush=True)
        checks.true(f"{label} row {b}: equal for {diverged} tokens, then different where transformers' relative logit gap "
                    f"is {gap:.1e} (a near tie is < {TIE:g})", gap < TIE)
    return compared


def test_greedy_tokens_equal_transformers_generate(g, tuna, checks):
    want, logits = hf_generate(g["model"], g["prompts"], g["new"])
    out = tuna_generate(tuna, g["model_dir"], g["ids_file"], g["new"])
    checks.true(f"one JSON line per prompt ({len(out)})", [o["index"] for o in out] == [0, 1, 2])
    checks.true("prompt token counts", [o["prompt_tokens"] for o in out] == [len(p) for p in g["prompts"]])
    checks.true("every row ran to the limit (no stop ids)", all(o["finish"] == "length" for o in out))
    n = compare(checks, "base", [o["tokens"] for o in out], want, logits)
    checks.true(f"{n} of {sum(map(len, want))} tokens compared before any near tie (at least half)", 2 * n >= sum(map(len, want)))
    g["base_tokens"] = want


def test_a_stop_id_ends_each_row_at_its_first_occurrence(g, tuna, checks):
    base = g.get("base_tokens") or hf_generate(g["model"], g["prompts"], g["new"])[0]
    longest = max(range(len(base)), key=lambda b: len(set(base[b])))
    stop = base[longest][g["new"] // 2]
    want, logits = hf_generate(g["model"], g["prompts"], g["new"], eos=stop)
    out = tuna_generate(tuna, g["model_dir"], g["ids_file"], g["new"], "--stop-id", str(stop))
    print(f"    stop id {stop}: transformers' rows end after {[len(r) for r in want]} tokens", flush=True)
    compare(checks, f"stop {stop}", [o["tokens"] for o in out], want, logits)
    for o, row in zip(out, want):
        expected = "stop" if row and row[-1] == stop else "length"
        checks.true(f"row {o['index']}: finish {o['finish']} ({expected} expected)", o["finish"] == expected)


@pytest.fixture(scope="module")
def adapted(g, rng, seed):
    """A PEFT adapter on a fresh copy of the reference, saved where tuna can read it."""
    lora_layer = rng.randrange(g["layers"])
    settings = {"r": 4, "lora_alpha": 8, "target_modules": list(lora_ref.ATTENTION_MODULES),
                "target_parameters": [f"{lora_layer}.mlp.experts.gate_up_proj", f"{lora_layer}.mlp.experts.down_proj"]}
    peft_model = get_peft_model(ref.load_reference(g["model_dir"]), lora_ref.lora_config(settings))
    lora_ref.randomize_adapter(peft_model, seed, settings)
    peft_model.eval()
    adapter_dir = os.path.join(g["dir"], "adapter")
    peft_model.save_pretrained(adapter_dir)
    loaded = PeftModel.from_pretrained(ref.load_reference(g["model_dir"]), adapter_dir).eval()
    print(f"adapter: r=4 alpha=8 on q/k/v/o of every layer and layer {lora_layer}'s experts", flush=True)
    return dict(dir=adapter_dir, model=loaded)


def test_with_an_adapter_tokens_equal_peft_generate(g, adapted, tuna, checks):
    want, logits = hf_generate(adapted["model"], g["prompts"], g["new"])
    base = g.get("base_tokens") or hf_generate(g["model"], g["prompts"], g["new"])[0]
    checks.true("the adapter changes what transformers generates", want != base)
    out = tuna_generate(tuna, g["model_dir"], g["ids_file"], g["new"], "--adapter", adapted["dir"])
    compare(checks, "adapter", [o["tokens"] for o in out], want, logits)


def test_merged_checkpoint_tokens_equal_transformers_on_the_merged_files(g, adapted, tuna, checks):
    merged = os.path.join(g["dir"], "merged")
    run([tuna, "merge", "--model", g["model_dir"], "--adapter", adapted["dir"], "--out", merged, "--dtype", "f32",
         "--experts", "f32"])
    dense = GptOssForCausalLM.from_pretrained(merged, dtype=torch.float32, attn_implementation="eager",
                                              experts_implementation="eager").eval()
    want, logits = hf_generate(dense, g["prompts"], g["new"])
    out = tuna_generate(tuna, merged, g["ids_file"], g["new"])
    compare(checks, "merged", [o["tokens"] for o in out], want, logits)


def test_sampling_is_seeded_and_top_k_one_is_greedy(g, tuna, checks):
    new = g["new"]
    first = tuna_generate(tuna, g["model_dir"], g["ids_file"], new, "--temperature", "1.0", "--seed", "11")
    again = tuna_generate(tuna, g["model_dir"], g["ids_file"], new, "--temperature", "1.0", "--seed", "11", "--batch-size", "3")
    other = tuna_generate(tuna, g["model_dir"], g["ids_file"], new, "--temperature", "1.0", "--seed", "12")
    greedy = tuna_generate(tuna, g["model_dir"], g["ids_file"], new)
    top1 = tuna_generate(tuna, g["model_dir"], g["ids_file"], new, "--temperature", "0.7", "--top-k", "1", "--seed", "3")
    tokens = lambda out: [o["tokens"] for o in out]  # noqa: E731
    checks.true("the same seed gives the same tokens, whatever the batch size", tokens(first) == tokens(again))
    checks.true("another seed gives other tokens", tokens(first) != tokens(other))
    checks.true("sampling at temperature 1 differs from greedy", tokens(first) != tokens(greedy))
    checks.true("top-k 1 is greedy", tokens(top1) == tokens(greedy))
