#!/usr/bin/env python3
"""Native TunaEngine LoRA training vs PyTorch CPU (transformers GptOssForCausalLM + PEFT), fp32,
same checkpoint, same tokens, same batch shape, same LoRA config and initial adapter, same
thread count. A step is forward + backward + clip_grad_norm_ + AdamW, as in a trainer.
Every side runs in its own process, so each peak RSS is that side's alone.

    python Benchmarks/train/bench.py --train-bench PATH/TO/TrainBench [--threads 2] [--steps 3]

Prints a table, the ratios and one JSON summary line. Exit 1 if the two sides disagree on the
first step's loss or gradient norm (both start from the same PEFT-saved adapter).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "Tests", "Python"))  # the reference package

CONFIGS = {
    # name: (label, rank, alpha, target_modules, expert layers)
    "attn": ("(a) attention r=16 q,k,v,o", 16, 32, ["q_proj", "k_proj", "v_proj", "o_proj"], []),
    "experts": ("(b) all-linear + experts L2,L3 r=8", 8, 16, "all-linear", [2, 3]),
}


def status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def reset_peak():
    """VmHWM := VmRSS (Linux >= 4.0), so the next VmHWM read is the training phase's own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def torch_worker(args):
    """One PyTorch run in this (fresh) process: build the PEFT model, save its initial adapter
    for the native side, train, print one JSON line."""
    import torch
    torch.set_num_threads(args.threads)
    from reference import gptoss as ref
    from reference import lora as lora_ref
    from peft import get_peft_model
    from safetensors.torch import load_file

    label, rank, alpha, modules, expert_layers = CONFIGS[args.config]
    settings = {"r": rank, "lora_alpha": alpha, "target_modules": modules,
                "target_parameters": [f"{l}.mlp.experts.{p}" for l in expert_layers for p in ("gate_up_proj", "down_proj")]}
    t0 = time.perf_counter()
    base = ref.load_reference(args.dir)
    base.set_experts_implementation(args.torch_experts)
    model = get_peft_model(base, lora_ref.lora_config(settings))
    # random non-zero A and B (PEFT's B = 0 init would zero every A gradient of step one)
    lora_ref.randomize_adapter(model, 11, settings)
    model.save_pretrained(args.adapter_out)
    model.train()  # lora_dropout is 0 and gpt-oss attention_dropout is 0: train() changes no math
    load_s = time.perf_counter() - t0
    ids = load_file(os.path.join(args.dir, "inputs.safetensors"))["input_ids"][:args.batch, :args.seq].contiguous()
    params = list(lora_ref.adapter_parameters(model).values())
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    rss_after_load, peak_load = status_kib("VmRSS:"), status_kib("VmHWM:")
    reset_ok = reset_peak()
    times, cpu, losses, norms = [], [], [], []
    for step in range(args.warmup + args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        opt.step()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        losses.append(loss.item())
        norms.append(norm.item())
        if step >= args.warmup:
            times.append(dt)
            cpu.append(dc)
    peak_train = status_kib("VmHWM:")
    # what this torch build's BLAS (MKL) delivers on a 1024^3 fp32 matmul, for context
    a, b = torch.full((1024, 1024), 0.5), torch.full((1024, 1024), 0.25)
    best = float("inf")
    for _ in range(4):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    tokens = ids.numel()
    print(json.dumps({
        "engine": f"pytorch {torch.__version__} + peft", "threads": torch.get_num_threads(), "experts_impl": args.torch_experts,
        "tokens_per_step": tokens, "step_s": times, "step_s_min": min(times),
        "step_s_median": sorted(times)[len(times) // 2], "cpu_s": cpu, "cpu_s_median": sorted(cpu)[len(cpu) // 2],
        "tokens_per_s": tokens / min(times), "losses": losses, "grad_norms": norms,
        "lora_parameters": sum(p.numel() for p in params), "load_s": load_s,
        "rss_after_load_mib": rss_after_load / 1024, "peak_rss_load_mib": peak_load / 1024,
        "peak_rss_train_mib": peak_train / 1024, "peak_rss_mib": max(peak_load, peak_train) / 1024,
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_reset_ok": reset_ok,
        "mm_gflops_1024cube": 2 * 1024 ** 3 / best / 1e9,
    }))


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_checkpoint(args):
    import torch
    from reference import gptoss as ref
    from safetensors.torch import save_file
    kwargs = ref.config_kwargs(hidden=args.hidden, layers=args.layers, heads=args.heads, kv_heads=args.kv_heads,
                               head_dim=64, experts=args.experts, top_k=args.top_k, intermediate=args.intermediate,
                               vocab=args.vocab, sliding_window=128, yarn_factor=32.0, original_max=4096, max_pos=131072)
    marker = os.path.join(args.dir, "bench.json")
    want = {"kwargs": kwargs, "batch": args.batch, "seq": args.seq}
    if not (os.path.exists(marker) and json.load(open(marker)) == want):
        ref.write_checkpoint(args.dir, kwargs, seed=5)
        gen = torch.Generator().manual_seed(6)
        save_file({"input_ids": torch.randint(0, kwargs["vocab_size"], (args.batch, args.seq), generator=gen)},
                  os.path.join(args.dir, "inputs.safetensors"))
        json.dump(want, open(marker, "w"))
    return kwargs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-bench", help="the TrainBench executable (run.sh builds it)")
    ap.add_argument("--dir", default="/tmp/tuna-train-bench-ckpt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (PyTorch's first step after one warmup is still ~25% slow)")
    ap.add_argument("--rounds", type=int, default=1, help="runs per side, interleaved; the fastest is kept")
    ap.add_argument("--configs", default="attn,experts")
    ap.add_argument("--no-recompute", action="store_true", help="skip the native gradient-checkpointing runs")
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--experts", type=int, default=16)
    ap.add_argument("--top-k", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=16384)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--torch-experts", default="eager", help="transformers experts implementation (eager, grouped_mm)")
    # internal: one PyTorch run in a child process
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--adapter-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        return torch_worker(args)
    if not args.train_bench:
        ap.error("--train-bench is required")

    import torch
    kwargs = make_checkpoint(args)
    n = str(args.threads)
    env = dict(os.environ, OPENBLAS_NUM_THREADS=n, OMP_NUM_THREADS=n, MKL_NUM_THREADS=n)
    common = ["--threads", n, "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch),
              "--seq", str(args.seq), "--lr", str(args.lr), "--max-grad-norm", str(args.max_grad_norm)]
    sides = ["pytorch", "native"] + ([] if args.no_recompute else ["native_recompute"])
    results = {}
    for name in args.configs.split(","):
        adapter = os.path.join(args.dir, f"adapter-{name}")
        commands = {
            "pytorch": [sys.executable, os.path.abspath(__file__), "--torch-worker", "--config", name, "--dir", args.dir,
                        "--adapter-out", adapter, "--torch-experts", args.torch_experts] + common,
            "native": [args.train_bench, args.dir, "--adapter", adapter] + common,
            "native_recompute": [args.train_bench, args.dir, "--adapter", adapter, "--recompute"] + common,
        }
        # the box is shared: sides run interleaved, round after round, and each keeps its run
        # with the fastest step (the least disturbed estimate, as Benchmarks/engine does)
        runs = {}
        for _ in range(args.rounds):
            for side in sides:  # pytorch first: it writes the adapter both sides start from
                r = run_json(commands[side], env)
                if side not in runs or r["step_s_min"] < runs[side]["step_s_min"]:
                    runs[side] = r
        # step 0 (same adapter, same batch) must agree to fp32 noise; later steps only roughly:
        # AdamW's first updates are ~lr * sign(g), so gradient entries at fp32 noise level move
        # their weights by a full lr either way and the two runs drift apart slowly
        ref_losses, ref_norms = runs["pytorch"]["losses"], runs["pytorch"]["grad_norms"]
        natives = [r for k, r in runs.items() if k.startswith("native")]
        runs["step0_loss_rel_diff"] = max(abs(r["losses"][0] - ref_losses[0]) / abs(ref_losses[0]) for r in natives)
        runs["step0_grad_norm_rel_diff"] = max(abs(r["grad_norms"][0] - ref_norms[0]) / ref_norms[0] for r in natives)
        runs["later_loss_rel_diff"] = max([abs(a - b) / abs(b) for r in natives
                                           for a, b in zip(r["losses"][1:], ref_losses[1:])] or [0.0])
        results[name] = runs

    coretype = os.environ.get("OPENBLAS_CORETYPE", "(unset)")
    nat = next(iter(results.values()))["native"]
    pt = next(iter(results.values()))["pytorch"]
    print(f"model: hidden {kwargs['hidden_size']}, {kwargs['num_hidden_layers']} layers (sliding 128 / full), "
          f"{kwargs['num_attention_heads']} q x {kwargs['num_key_value_heads']} kv heads x 64, {kwargs['num_local_experts']} "
          f"experts top-{kwargs['num_experts_per_tok']}, intermediate {kwargs['intermediate_size']}, vocab "
          f"{kwargs['vocab_size']}, MXFP4 experts, fp32 compute")
    print(f"batch {args.batch} x {args.seq} = {args.batch * args.seq} tokens/step; {args.threads} threads; "
          f"step = fwd + bwd + clip + AdamW; {args.warmup} warmup + {args.steps} timed steps x {args.rounds} round(s); "
          f"OPENBLAS_CORETYPE={coretype}; {os.cpu_count()} cores")
    print(f"BLAS: OpenBLAS ({nat['openblas_core']} kernels) sgemm {nat['sgemm_gflops_1024cube']:.0f} GFLOP/s (1024^3), "
          f"{nat['sgemm_gflops_expert_shape']:.0f} GFLOP/s (expert shape); torch {torch.__version__} (MKL) mm "
          f"{pt['mm_gflops_1024cube']:.0f} GFLOP/s (1024^3); both measured in the runs below")
    print(f"{'config':<36}{'side':<31}{'tok/s':>7}{'best s':>8}{'median':>8}{'cpu s':>7}"
          f"{'RSS load':>10}{'peak train':>11}{'peak proc':>10}")
    for name, runs in results.items():
        label = CONFIGS[name][0]
        for side in sides:
            r = runs[side]
            desc = {"pytorch": f"pytorch+peft ({args.torch_experts} experts)", "native": "native",
                    "native_recompute": "native, recompute (grad ckpt)"}[side]
            print(f"{label:<36}{desc:<31}{r['tokens_per_s']:7.1f}{r['step_s_min']:8.2f}{r['step_s_median']:8.2f}"
                  f"{r['cpu_s_median']:7.1f}{r['rss_after_load_mib']:8.0f}Mi{r['peak_rss_train_mib']:9.0f}Mi"
                  f"{r['peak_rss_mib']:8.0f}Mi")
            label = ""
    print("tok/s = tokens per step / fastest step; median = median step wall time; cpu s = CPU seconds per step "
          "(all threads); RSS load = after loading; peak train = VmHWM reset after loading; peak proc = VmHWM overall")
    for name, runs in results.items():
        p, nv = runs["pytorch"], runs["native"]
        line = (f"{CONFIGS[name][0]}: native / pytorch {nv['tokens_per_s'] / p['tokens_per_s']:.2f}x tok/s "
                f"(median steps {p['step_s_median'] / nv['step_s_median']:.2f}x), peak RSS "
                f"{nv['peak_rss_mib'] / p['peak_rss_mib']:.2f}x")
        if "native_recompute" in runs:
            rc = runs["native_recompute"]
            line += (f"; recompute: {rc['tokens_per_s'] / nv['tokens_per_s']:.2f}x speed, training peak "
                     f"{rc['peak_rss_train_mib'] - rc['rss_after_load_mib']:.0f} vs "
                     f"{nv['peak_rss_train_mib'] - nv['rss_after_load_mib']:.0f} MiB above load")
        line += (f"; step 0 loss / grad norm vs pytorch {runs['step0_loss_rel_diff']:.0e} / "
                 f"{runs['step0_grad_norm_rel_diff']:.0e} rel (later steps {runs['later_loss_rel_diff']:.0e})")
        print(line)
    print(json.dumps({"args": vars(args), "openblas_coretype": coretype, "results": results}))
    ok = all(r["step0_loss_rel_diff"] < 1e-5 and r["step0_grad_norm_rel_diff"] < 1e-4 for r in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
