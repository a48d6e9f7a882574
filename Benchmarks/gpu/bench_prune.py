"""Issue 6's GPU measurement: a `task: prune` job on the torch trainer (worker/tuna_torch/prune.py)
on a gpt-oss-20b-shaped model with random weights (see README.md beside this file).

One process does everything:
  1. writes the random gpt-oss-20b-shaped checkpoint (MXFP4 experts, BF16 elsewhere, ~13 GB) with
     bench_lora.py's `write_checkpoint` (imported, so both benchmarks measure the same model);
  2. writes the prepared prune data as `tuna prepare` writes it (Sources/TunaTrain/PrunePlan.swift:
     plan.json, calibration.jsonl, validation.jsonl, general.jsonl), with random token ids: the GPU
     machine has no Swift toolchain, so the job runs on this directory (`prepared`, what
     `python3 -m tuna_torch.prune --prepared` does) instead of running `tuna prepare`;
  3. runs the prune job in this process through `prune.run`, exactly the worker's code path
     after `tuna prepare` (load → profile → evaluate every N by masking → write the profile, the
     pruned checkpoint and the report), once per experts implementation (`--experts`, default:
     grouped_mm = MXFP4 dequantized to bf16 at load, then mxfp4 = kept quantized on the GPU; the
     second run writes no checkpoint), timing each phase;
  4. checks the pruned checkpoint's header (every expert tensor cut to N along dim 0, config
     num_local_experts = N) and compares the runs' kept experts and metrics.

    python3 Benchmarks/gpu/bench_prune.py                       # the real shape, on the GPU
    python3 Benchmarks/gpu/bench_prune.py --small --ckpt /tmp/x  # tiny config, CPU smoke test

Results: a table on stdout (last), results.json under $OUT (or --out), written after every run.
"""
import argparse
import dataclasses
import gc
import json
import os
import random
import shutil
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_lora  # noqa: E402  (sets HF offline, puts worker/ on sys.path)
from bench_lora import GPT_OSS_20B, SMALL, write_checkpoint  # noqa: E402

import torch  # noqa: E402
from tuna_torch import compute, prune, spec  # noqa: E402
from tuna_torch.dist import Distributed  # noqa: E402
from tuna_torch.expert_pruner import SafeTensorsFile  # noqa: E402

T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


def write_rows(path, rows):
    """JSON lines as `tuna prepare` writes them: {"tokens":[...],"mask":[...]} (compact)."""
    with open(path, "w") as f:
        for tokens, mask in rows:
            f.write('{"tokens":[' + ",".join(map(str, tokens)) + '],"mask":[' + ",".join(map(str, mask)) + "]}\n")


def random_rows(rng, n, length, vocab, scored_from):
    """n rows of `length` random token ids; the loss mask scores positions >= scored_from (the
    "assistant's reply": an evaluation scores only those, as with real chat data)."""
    return [([rng.randrange(vocab) for _ in range(length)], [0] * scored_from + [1] * (length - scored_from))
            for _ in range(n)]


def write_prepared(directory, a, vocab, write_checkpoint):
    """What `tuna prepare` writes for the job (PrunePlan.write), with random rows."""
    os.makedirs(directory, exist_ok=True)
    rng = random.Random(a.seed)
    seq = a.seq
    write_rows(os.path.join(directory, "calibration.jsonl"), random_rows(rng, a.calibration_rows, seq, vocab, 0))
    write_rows(os.path.join(directory, "validation.jsonl"), random_rows(rng, a.held_out_rows, seq, vocab, seq // 2))
    write_rows(os.path.join(directory, "general.jsonl"), random_rows(rng, a.general_rows, seq, vocab, seq // 2))
    plan = {"format": spec.plan_format("prune"), "task": "prune", "keep": a.keep, "also_evaluate": a.also_evaluate,
            "evaluations": sorted(set([a.keep] + a.also_evaluate), reverse=True), "score": a.score,
            "keep_super_experts": True, "super_expert_ratio": 10.0, "calibration_examples": a.calibration_rows,
            "max_seq_len": seq, "write_checkpoint": write_checkpoint, "batch_size": 8,
            "calibration_rows": a.calibration_rows, "held_out_rows": a.held_out_rows, "general_rows": a.general_rows}
    with open(os.path.join(directory, "plan.json"), "w") as f:
        json.dump(plan, f, sort_keys=True, separators=(",", ":"))


def job_file(path, a, model_dir, experts):
    """The job as the worker writes it: the published validated prune job (contract/) with the
    fields this benchmark varies; only `model`, `task` and `torch` are read with --prepared (the
    prune settings come from plan.json, which the native side derives from this section)."""
    g = spec.golden("prune-torch")
    job = dataclasses.replace(
        g, name="bench-prune", model=model_dir, resources=dataclasses.replace(g.resources, gpus=1),
        prune=dataclasses.replace(g.prune, keep=a.keep, also_evaluate=list(a.also_evaluate), score=a.score,
                                  calibration_examples=a.calibration_rows, max_seq_len=a.seq),
        torch=dataclasses.replace(g.torch, attention=a.attention, experts=experts, loss_chunk_rows=4096))
    with open(path, "w") as f:
        json.dump(spec.to_json(job), f)
    return job


class Recorder:
    """The runner's emit: keeps every event and prints a short line for each."""

    def __init__(self):
        self.events = []

    def __call__(self, event, **fields):
        self.events.append(dict(event=event, **fields))
        short = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in fields.items() if k != "note"}
        log(f"event {event} {json.dumps(short)}")


def check_checkpoint(out_dir, keep):
    """The pruned checkpoint's header: every router / expert tensor has N rows, every other
    tensor is there; config.json says N."""
    f = SafeTensorsFile(os.path.join(out_dir, "model.safetensors"))
    with open(os.path.join(out_dir, "config.json")) as c:
        cfg = json.load(c)
    cut = [n for n in f.tensors if ".mlp.router." in n or ".mlp.experts." in n]
    bad = [n for n in cut if f.tensors[n][1][0] != keep]
    return {"tensors": len(f.tensors), "expert_tensors": len(cut), "wrong_leading_dim": bad[:8],
            "num_local_experts": cfg.get("num_local_experts"),
            "ok": not bad and len(cut) > 0 and cfg.get("num_local_experts") == keep}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="/tmp/tuna-gptoss-20b-random", help="where the random checkpoint is written")
    ap.add_argument("--work", default="/tmp/tuna-bench-prune", help="prepared data and the job's output go here")
    ap.add_argument("--small", action="store_true", help="tiny config (CPU smoke test)")
    ap.add_argument("--experts", default="grouped_mm,mxfp4",
                    help="experts implementations to run the job with, in order (the first writes the checkpoint)")
    ap.add_argument("--attention", default="auto", help="the job's torch.attention (auto: flex on CUDA, eager on the CPU)")
    ap.add_argument("--keep", type=int, default=20)
    ap.add_argument("--also-evaluate", default="24,16")
    ap.add_argument("--score", default="reap", choices=("frequency", "reap", "easy_ep"))
    ap.add_argument("--seq", type=int, default=1024, help="tokens per row")
    ap.add_argument("--calibration-rows", type=int, default=64)
    ap.add_argument("--held-out-rows", type=int, default=32, help="held-out rows (batches of 8)")
    ap.add_argument("--general-rows", type=int, default=16)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--deadline", type=float, default=300,
                    help="start no further run after this many seconds (a run takes ~2 min: the whole stays under 8)")
    ap.add_argument("--out", default=None, help="results.json here (default: $OUT)")
    ap.add_argument("--keep-ckpt", action="store_true")
    a = ap.parse_args()
    a.also_evaluate = [int(x) for x in a.also_evaluate.split(",") if x]
    cfg = json.loads(json.dumps(GPT_OSS_20B))
    if a.small:
        cfg.update(SMALL)  # 4 experts, top-2, vocab 1024
        a.keep, a.also_evaluate = 3, [4, 2]
        a.seq, a.calibration_rows, a.held_out_rows, a.general_rows = 64, 16, 16, 8
    out = a.out or os.environ.get("OUT")
    device = compute.pick_device()
    cuda = device.type == "cuda"
    import transformers
    results = {"env": {"torch": torch.__version__, "transformers": transformers.__version__,
                       "device": torch.cuda.get_device_name(0) if cuda else "cpu",
                       "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")},
               "settings": {k: v for k, v in vars(a).items() if k not in ("out",)}, "runs": {}, "errors": []}

    def save():
        if out:
            os.makedirs(out, exist_ok=True)
            with open(os.path.join(out, "results.json"), "w") as f:
                json.dump(results, f, indent=2, default=str)

    log(f"env {results['env']}")
    t = time.time()
    nbytes = write_checkpoint(a.ckpt, cfg, device)
    results["checkpoint"] = {"dir": a.ckpt, "bytes": nbytes, "write_s": round(time.time() - t, 1)}
    log(f"checkpoint written: {nbytes / 2**30:.2f} GiB in {time.time() - t:.1f}s -> {a.ckpt}")
    if cuda:
        torch.cuda.empty_cache()
    shutil.rmtree(a.work, ignore_errors=True)
    save()

    kept_by = {}
    for i, experts in enumerate(e for e in a.experts.split(",") if e):
        if time.time() - T0 > a.deadline:
            results["errors"].append(f"{experts}: not run (deadline {a.deadline}s reached)")
            log(results["errors"][-1])
            continue
        d = os.path.join(a.work, experts)
        prepared = os.path.join(d, "prepared")
        write_prepared(prepared, a, cfg["vocab_size"], write_checkpoint=(i == 0))
        job_path = os.path.join(d, "job.json")
        job = job_file(job_path, a, a.ckpt, experts)
        args = argparse.Namespace(job=job_path, out=os.path.join(d, "out"),
                                  root=None, tuna=None, work_dir=d, prepared=prepared)
        rec, timings = Recorder(), {}
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        log(f"run {experts}: prune job, keep {a.keep}, also {a.also_evaluate}, score {a.score}, attention {a.attention}")
        t = time.time()
        run = {"experts": experts}
        try:
            prune.run(job, args, rec, Distributed(), None, timings=timings)
            run["ok"] = True
        except Exception as e:  # an OOM or an unsupported path: recorded, the next run goes on
            traceback.print_exc()
            results["errors"].append(f"{experts}: {type(e).__name__}: {e}")
            run["ok"] = False
        run["total_s"] = round(time.time() - t, 2)
        run["phases_s"] = {k: round(v, 2) for k, v in timings.items()}
        run["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None
        run["events"] = rec.events
        report = os.path.join(args.out, "prune_report.json")
        if os.path.exists(report):
            with open(report) as f:
                kept_by[experts] = [l["kept"] for l in json.load(f)["layers"]]
            run["kept"] = kept_by[experts]
        if run["ok"] and i == 0:
            run["checkpoint_check"] = check_checkpoint(os.path.join(args.out, "model"), a.keep)
            log(f"pruned checkpoint: {run['checkpoint_check']}")
            shutil.rmtree(os.path.join(args.out, "model"), ignore_errors=True)  # ~8.5 GB
        results["runs"][experts] = run
        log(f"run {experts}: {run['total_s']}s, phases {run['phases_s']}, peak GPU {run['peak_gpu_mem_gb']} GiB")
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        save()

    # The runs against each other (same weights, bf16 on the GPU: not bit-equal, close).
    names = [n for n, r in results["runs"].items() if r.get("ok")]
    if len(names) >= 2:
        x, y = results["runs"][names[0]], results["runs"][names[1]]
        same = sum(kx == ky for kx, ky in zip(kept_by.get(names[0], []), kept_by.get(names[1], [])))
        ev = lambda r: {e.get("keep", "base"): e for e in r["events"] if e["event"] in ("baseline", "eval", "prune_eval")}  # noqa: E731
        ex, ey = ev(x), ev(y)
        results["comparison"] = {
            "runs": names, "layers_with_identical_kept_experts": f"{same}/{len(kept_by.get(names[0], []))}",
            "loss_rel_diff": {str(k): abs(ex[k]["loss"] - ey[k]["loss"]) / abs(ey[k]["loss"]) for k in ex if k in ey},
        }
        log(f"comparison {results['comparison']}")
    results["total_s"] = round(time.time() - T0, 1)
    save()
    if not a.keep_ckpt:
        shutil.rmtree(a.ckpt, ignore_errors=True)
        shutil.rmtree(a.work, ignore_errors=True)

    lines = ["| experts | total s | prepare | load | profile | evaluate | write | peak GPU GiB | baseline loss | "
             + " | ".join(f"N={n} loss / kl / top1 / hit" for n in sorted(set([a.keep] + a.also_evaluate), reverse=True)) + " |",
             "| --- " * (9 + len(set([a.keep] + a.also_evaluate))) + "|"]
    for name, r in results["runs"].items():
        ph = r["phases_s"]
        evs = {e["keep"]: e for e in r["events"] if e["event"] in ("eval", "prune_eval")}
        base = next((e["loss"] for e in r["events"] if e["event"] == "baseline"), None)
        cells = [f"{evs[n]['loss']:.4f} / {evs[n]['kl']:.4f} / {evs[n]['top1_agreement']:.3f} / {evs[n]['pruned_hit_share']:.3f}"
                 if n in evs else "-" for n in sorted(set([a.keep] + a.also_evaluate), reverse=True)]
        lines.append(f"| {name}{'' if r['ok'] else ' (failed)'} | {r['total_s']} | " + " | ".join(
            str(ph.get(k, "-")) for k in ("prepare", "load", "profile", "evaluate", "write"))
            + f" | {r['peak_gpu_mem_gb']} | {base if base is None else round(base, 4)} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    results["table"] = table
    save()
    print(f"\ncheckpoint: {json.dumps(results['checkpoint'])}; total {results['total_s']}s")
    if results["errors"]:
        print("errors:\n  " + "\n  ".join(results["errors"]))
    print("\n" + table, flush=True)
    sys.exit(1 if any(not r.get("ok") for r in results["runs"].values()) else 0)


if __name__ == "__main__":
    main()
