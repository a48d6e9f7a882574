#!/usr/bin/env python3
"""Native TunaEngine forward vs PyTorch CPU fp32 (transformers GptOssForCausalLM), same
checkpoint, same tokens, same thread count. Prints one table and a JSON summary.

    python Benchmarks/engine/bench.py --engine-bench PATH/TO/EngineBench [--threads 2]

Model (default): hidden 1024, intermediate 1024, 4 layers (sliding 128 / full), 16 q heads x 64,
4 kv heads, 8 experts top-4, vocab 4096, MXFP4 experts; batch 2 x 512 tokens.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "Tests", "Python"))  # the reference package
from reference import gptoss as ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine-bench", required=True)
    ap.add_argument("--dir", default="/tmp/tuna-engine-bench-ckpt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=512)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    kwargs = ref.benchmark_model(args.dir, args.hidden, args.layers)
    gen = torch.Generator().manual_seed(6)
    save_file({"input_ids": torch.randint(0, kwargs["vocab_size"], (args.batch, args.seq), generator=gen)},
              os.path.join(args.dir, "inputs.safetensors"))
    ids = load_file(os.path.join(args.dir, "inputs.safetensors"))["input_ids"]
    tokens = ids.numel()

    # The machine is shared (2 cores, other builds running), so PyTorch and native runs are
    # interleaved in rounds and each side reports its fastest forward (min is the estimate
    # least disturbed by other load); sgemm is re-measured inside every native run.
    model = ref.load_reference(args.dir)
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads))
    logits_path = os.path.join(args.dir, "native_logits.safetensors")
    torch_times = {"eager": [], "grouped_mm": []}
    natives = []
    with torch.no_grad():
        model(input_ids=ids[:, :8], use_cache=False)  # warm-up
        for _ in range(args.rounds):
            for impl in torch_times:
                model.set_experts_implementation(impl)
                for _ in range(2):
                    t0 = time.perf_counter()
                    torch_logits = model(input_ids=ids, use_cache=False).logits
                    torch_times[impl].append(time.perf_counter() - t0)
            out = subprocess.run([args.engine_bench, args.dir, "--threads", str(args.threads), "--repeats", "2",
                                  "--logits-out", logits_path], env=env, capture_output=True, text=True, check=True).stdout
            natives.append(json.loads(out.strip().splitlines()[-1]))
    results = {impl: {"forward_s_min": min(t), "tokens_per_s": tokens / min(t), "forward_s_all": t}
               for impl, t in torch_times.items()}
    native = dict(min(natives, key=lambda r: min(r["forward_s_all"])))
    native["forward_s_min"] = min(native["forward_s_all"])
    native["tokens_per_s"] = tokens / native["forward_s_min"]
    native["achieved_gflops"] = native["gflop_per_forward"] / native["forward_s_min"]
    native["sgemm_gflops_1024cube"] = max(r["sgemm_gflops_1024cube"] for r in natives)
    native["sgemm_gflops_expert_shape"] = max(r["sgemm_gflops_expert_shape"] for r in natives)
    streaming = json.loads(subprocess.run(
        [args.engine_bench, args.dir, "--threads", str(args.threads), "--repeats", "1", "--streaming"],
        env=env, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
    ours = load_file(logits_path)["logits"]
    err = ((ours - torch_logits).abs().max() / torch_logits.abs().max()).item()

    best_torch = max(results.values(), key=lambda r: r["tokens_per_s"])
    print(f"model {kwargs['hidden_size']}h x {kwargs['num_hidden_layers']}L, 8 experts top-4, vocab 4096; "
          f"batch {args.batch} x {args.seq} = {tokens} tokens; {args.threads} threads; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    for k, r in results.items():
        print(f"  pytorch {torch.__version__} fp32 (eager attn, {k} experts): {r['tokens_per_s']:8.1f} tok/s "
              f"({r['forward_s_min']:.3f} s/forward)")
    print(f"  native resident:  {native['tokens_per_s']:8.1f} tok/s ({native['forward_s_min']:.3f} s/forward), "
          f"{native['achieved_gflops']:.1f} GFLOP/s of {native['gflop_per_forward']:.1f} GFLOP; "
          f"peak RSS {native['peak_rss_mib']:.0f} MiB")
    print(f"  native streaming: {streaming['tokens_per_s']:8.1f} tok/s (1 run, incl. per-layer dequant), "
          f"peak RSS {streaming['peak_rss_mib']:.0f} MiB")
    print(f"  OpenBLAS sgemm: {native['sgemm_gflops_1024cube']:.1f} GFLOP/s (1024^3), "
          f"{native['sgemm_gflops_expert_shape']:.1f} GFLOP/s (expert shape {native['expert_shape']}), best of the runs")
    print(f"  native / best pytorch: {native['tokens_per_s'] / best_torch['tokens_per_s']:.2f}x; "
          f"native / sgemm(1024^3): {native['achieved_gflops'] / native['sgemm_gflops_1024cube']:.0%}; "
          f"logits max rel err vs pytorch {err:.1e}")
    print(json.dumps({"pytorch": results, "native": native, "streaming": streaming, "logits_max_rel_err": err}))
    return 0 if err < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
