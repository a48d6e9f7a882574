#!/usr/bin/env python3
"""Native greedy generation (TunaEngine's Generator, KV cache) vs transformers' `generate` on
the CPU, fp32, the same random gpt-oss checkpoint, the same prompts, the same thread count.

    python Benchmarks/generate/bench.py --generate-bench PATH/TO/GenerateBench [--threads 2]

Model (default): Benchmarks/engine's (hidden 1024, intermediate 1024, 4 layers sliding 128 /
full, 16 q heads x 64 over 4 kv heads, 8 experts top-4, vocab 4096, MXFP4 experts). Prompts:
8 of lengths 32..256 (a batch of different lengths, left-padded for transformers), 128 new
tokens each (no stop token: every row runs to the limit).
transformers as its users run gpt-oss on a CPU: eager attention (the only kind with sinks on
a CPU: sdpa is unsupported, flex raises), experts `grouped_mm` (5.17's default) and `eager`;
`generate(do_sample=False, use_cache=True)`. Each side's fastest of `--rounds` runs counts;
runs are interleaved. The generated tokens are compared (equal until a near tie, as
Tests/Python/test_generate.py checks them).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "Tests", "Python"))  # the reference package
from reference import gptoss as ref  # noqa: E402


@torch.no_grad()
def hf_generate(model, ids, mask, new):
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=new, min_new_tokens=new,
                         pad_token_id=0, use_cache=True)
    return out[:, ids.shape[1]:].tolist()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--generate-bench", required=True)
    ap.add_argument("--dir", default="/tmp/tuna-generate-bench-ckpt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--new", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    kwargs = ref.benchmark_model(args.dir, args.hidden, args.layers)
    gen = torch.Generator().manual_seed(7)
    lengths = torch.linspace(32, 256, args.prompts).round().int().tolist()
    prompts = [torch.randint(0, kwargs["vocab_size"], (n,), generator=gen).tolist() for n in lengths]
    prompts_file = os.path.join(args.dir, "prompts.json")
    json.dump(prompts, open(prompts_file, "w"))
    ids, mask = ref.left_padded(prompts)
    generated = args.prompts * args.new

    model = ref.load_reference(args.dir)
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads))
    hf = {"grouped_mm": {"total": [], "prefill": []}, "eager": {"total": [], "prefill": []}}
    natives = []
    hf_tokens = None
    hf_generate(model, ids[:, -8:], mask[:, -8:], 2)  # warm-up (the last 8 columns: real tokens in every row)
    for _ in range(args.rounds):
        for impl, times in hf.items():
            model.set_experts_implementation(impl)
            t0 = time.perf_counter()
            hf_generate(model, ids, mask, 1)
            times["prefill"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            tokens = hf_generate(model, ids, mask, args.new)
            times["total"].append(time.perf_counter() - t0)
            if impl == "eager":
                hf_tokens = tokens
        out = subprocess.run([args.generate_bench, args.dir, "--prompts", prompts_file, "--new", str(args.new),
                              "--threads", str(args.threads), "--repeats", "1"],
                             env=env, capture_output=True, text=True, check=True).stdout
        natives.append(json.loads(out.strip().splitlines()[-1]))
    native = min(natives, key=lambda r: r["total_s_min"])
    native_prefill = min(r["prefill_s_min"] for r in natives)

    agree, ties = 0, []
    for row, (mine, theirs) in enumerate(zip(native["tokens"], hf_tokens)):
        first = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), None)
        agree += len(theirs) if first is None else first
        if first is not None:
            ties.append((row, first, mine[first], theirs[first]))
    if ties:  # each divergence must be a near tie in transformers' own logits (not timed)
        model.set_experts_implementation("eager")
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=args.new,
                                 min_new_tokens=args.new, pad_token_id=0, use_cache=True, return_dict_in_generate=True,
                                 output_logits=True)
        for row, step, mine, theirs in ties:
            logits = out.logits[step][row].float()
            gap = (logits[theirs] - logits[mine]).item() / logits.abs().max().item()
            print(f"  row {row} diverges at new token {step}: native {mine}, transformers {theirs}, "
                  f"relative logit gap in transformers' logits {gap:.1e}" + ("" if gap < 1e-4 else "  NOT A NEAR TIE"))
            if gap >= 1e-4:
                return 1
    print(f"model {kwargs['hidden_size']}h x {kwargs['num_hidden_layers']}L, 8 experts top-4, vocab 4096; {args.prompts} prompts "
          f"of {lengths[0]}..{lengths[-1]} tokens, {args.new} new tokens each (greedy); {args.threads} threads; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    results = {}
    for impl, times in hf.items():
        total, prefill = min(times["total"]), min(times["prefill"])
        results[impl] = {"total_s": total, "prefill_s": prefill, "generated_tokens_per_s": generated / total}
        print(f"  transformers {__import__('transformers').__version__} generate (eager attn, {impl} experts): "
              f"{generated / total:8.1f} generated tok/s ({total:.2f} s; prefill + 1 token {prefill:.2f} s)")
    best = max(results.values(), key=lambda r: r["generated_tokens_per_s"])
    rate = generated / native["total_s_min"]
    print(f"  native Generator:  {rate:8.1f} generated tok/s ({native['total_s_min']:.2f} s; prefill + 1 token "
          f"{native_prefill:.2f} s); peak RSS {native['peak_rss_mib']:.0f} MiB")
    print(f"  native / best transformers: {rate / best['generated_tokens_per_s']:.2f}x; "
          f"greedy tokens equal to transformers' (eager experts) for {agree} of {generated} before any divergence")
    print(json.dumps({"transformers": results, "native": {"total_s": native["total_s_min"], "prefill_s": native_prefill,
                                                          "generated_tokens_per_s": rate, "peak_rss_mib": native["peak_rss_mib"]},
                      "tokens_agreeing": agree, "tokens_generated": generated}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
