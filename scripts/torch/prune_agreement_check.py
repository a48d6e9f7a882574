#!/usr/bin/env python3
"""Agreement check: `task: prune` jobs on the torch trainer (worker/tuna_torch/prune.py) against
the native prune runner (`tuna train`, Sources/TunaTrain/PruneRunner.swift).

Both get the same job; the torch trainer profiles and evaluates the rows `tuna prepare` writes
(the native runner's own calibration / held-out / general data), so on the CPU in fp32 the
only differences left are floating-point ones. A tiny random gpt-oss from `tuna init-model`
(3 layers, 8 MXFP4 experts, top-2), the demo's arithmetic data (calibration and held-out) and a
small general set. For each score kind (frequency, reap, easy_ep; easy_ep with a low
super_expert_ratio so super experts exist and are kept), one job with an N of its own and two
`also_evaluate` N (one of them every expert), and the runs compared, printing every number:

  * the kept experts of every layer (prune_report.json): identical; the super experts:
    identical; calibration tokens, parameters and bytes before/after: equal;
  * the profile (expert_profile.safetensors): top-k counts identical; gate mass, reap and
    easy_ep sums and the max output norms within PROFILE_TOLERANCE (relative to each tensor's
    largest entry); the routing-mass share per layer within SHARE_TOLERANCE;
  * the events, in order and with the same fields: prune_profile (tokens; the cache used by the
    second and third job on both sides), baseline and every N's eval / prune_eval: loss and
    general_loss within LOSS_TOLERANCE, kl and general_kl within KL_TOLERANCE, top1_agreement,
    general_top1_agreement and pruned_hit_share within COUNT_TOLERANCE (they are ratios of
    counts: equal unless a near-tie between two logits rounds the other way), tokens equal;
  * the pruned checkpoints: the same tensors (names, dtypes, shapes, bytes), the same
    config.json, the same tokenizer files.

Then: the torch job with `experts: grouped_mm` and with `experts: mxfp4` (the profile calls the
experts module itself, so every experts implementation must give the same profile); the
torch runner on an already-prepared directory (`python3 -m tuna_torch.prune --prepared`, what
the GPU benchmark uses) equal to the worker's way; an output directory whose model/ is the
base checkpoint refused (exit 1, base untouched); a keep below the experts per token refused.

    python3 -m scripts.torch.prune_agreement_check --tuna "$(swift build --show-bin-path)/tuna" [--keep]

Last line: `N passed, M failed`; exit 1 on any failure.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile


from scripts.torch.agreement_check import by, run, torch_env, write_job
from scripts.lib.checks import DATA, VOCAB, Checks, add_tuna, tuna_path

# fp32 forward passes on both sides, float64 sums: losses agree to summation order (observed
# <= 8e-9 relative).
LOSS_TOLERANCE = 1e-6
# KL(base || pruned) is a sum of p * (log p - log q) where the two log-probabilities come from
# different implementations: each term carries their rounding difference (~1e-7 of a log-prob)
# (observed <= 8e-8 relative).
KL_TOLERANCE = 1e-5
# Profile sums, per tensor relative to its largest entry: fp32 expert outputs and norms from two
# implementations (observed: max_norm 4.4e-7, easy_sum 1.1e-7, gate_mass 7e-8, reap_sum 3e-8).
PROFILE_TOLERANCE = 1e-5
# Routing-mass shares (ratios of gate-mass sums; observed <= 3e-8 relative).
SHARE_TOLERANCE = 1e-6
# Ratios of counts (top-1 agreement over ~1100 positions, hit share over ~20000 choices): equal
# unless a near-tie between two logits flips (observed: always equal); allow about one flip.
COUNT_TOLERANCE = 1e-3


def job_spec(model_dir, general, trainer, torch_section=None, **prune):
    """The fields of a prune job this check sets (`write_job` fills in the rest)."""
    job = {"name": "prune-check", "trainer": trainer, "task": "prune", "model": model_dir,
           "dataset": {"path": DATA, "format": "csv", "fields": {"prompt": "problem", "response": "solution"},
                       "template": "im_start", "val_fraction": 0.1},
           "prune": dict({"calibration_examples": 48, "max_seq_len": 96,
                          "general": {"path": general, "format": "jsonl", "template": "im_start", "val_fraction": 0}},
                         **prune)}
    if trainer == "torch":
        job["torch"] = dict({"loss_chunk_rows": 4096}, **(torch_section or {}))
    return job


def torch_cmd(args, job, out, work, module="tuna_torch", *extra):
    return [sys.executable, "-m", module, job, "--out", out, "--tuna", args.tuna, "--work-dir", work, *extra]


def env_with_cache(cache):
    env = torch_env()
    env["TUNA_CACHE_DIR"] = cache
    return env


def load_profile(path):
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        return f.metadata(), {k: f.get_tensor(k).double() for k in f.keys()}


def compare_profiles(c, what, got_path, want_path):
    gm, got = load_profile(got_path)
    wm, want = load_profile(want_path)
    c.equal(f"{what}: profile metadata", gm, wm)
    c.equal(f"{what}: top-k counts identical", bool((got["counts"] == want["counts"]).all()), True)
    for name in ("gate_mass", "reap_sum", "easy_sum", "max_norm"):
        scale = float(want[name].abs().max())
        err = float((got[name] - want[name]).abs().max()) / scale if scale > 0 else float((got[name] - want[name]).abs().max())
        c.true(f"{what}: {name}", err < PROFILE_TOLERANCE, f"(max diff / max entry {err:.2e} < {PROFILE_TOLERANCE:g})")


def compare_reports(c, what, got_dir, want_dir):
    with open(os.path.join(got_dir, "prune_report.json")) as f:
        got = json.load(f)
    with open(os.path.join(want_dir, "prune_report.json")) as f:
        want = json.load(f)
    c.equal(f"{what}: report fields", sorted(got), sorted(want))
    for k in ("keep", "score", "calibration_tokens", "parameters_before", "parameters_after", "bytes_before", "bytes_after",
              "note"):
        c.equal(f"{what}: report {k}", got.get(k), want.get(k))
    c.equal(f"{what}: kept experts per layer", [l["kept"] for l in got["layers"]], [l["kept"] for l in want["layers"]])
    c.equal(f"{what}: super experts per layer", [l["super_experts"] for l in got["layers"]],
            [l["super_experts"] for l in want["layers"]])
    c.rel(f"{what}: routing-mass share per layer", [l["routing_mass_share"] for l in got["layers"]],
          [l["routing_mass_share"] for l in want["layers"]], SHARE_TOLERANCE)
    return got


def compare_events(c, what, got, want):
    names = lambda ev: [(e["event"], e.get("keep")) for e in ev if e["event"] != "log"]  # noqa: E731
    c.equal(f"{what}: events in order", names(got), names(want))
    for e, f in zip(got, want):
        extra = {"peak_gpu_mem_gb"}  # the torch runner's addition on CUDA
        if set(e) - extra != set(f):
            c.equal(f"{what}: {f['event']} fields", sorted(set(e) - extra), sorted(f))
    gp, wp = by(got, "prune_profile"), by(want, "prune_profile")
    c.equal(f"{what}: profile tokens", [e["tokens"] for e in gp], [e["tokens"] for e in wp])
    c.equal(f"{what}: profile cached", [e["cached"] for e in gp], [e["cached"] for e in wp])
    gb, wb = by(got, "baseline")[0], by(want, "baseline")[0]
    c.rel(f"{what}: baseline loss", gb["loss"], wb["loss"], LOSS_TOLERANCE)
    if wb.get("general_loss") is not None:
        c.rel(f"{what}: baseline general_loss", gb["general_loss"], wb["general_loss"], LOSS_TOLERANCE)
    evals = lambda ev: [e for e in ev if e["event"] in ("eval", "prune_eval")]  # noqa: E731
    for e, f in zip(evals(got), evals(want)):
        n = f"{what}: N={f['keep']}"
        c.equal(f"{n} tokens", e["tokens"], f["tokens"])
        c.rel(f"{n} loss", e["loss"], f["loss"], LOSS_TOLERANCE)
        c.rel(f"{n} routing_mass_kept", e["routing_mass_kept"], f["routing_mass_kept"], SHARE_TOLERANCE)
        for k in ("kl", "general_kl"):
            if f[k] == 0:
                c.equal(f"{n} {k} (every expert kept)", e[k], 0.0)
            else:
                c.rel(f"{n} {k}", e[k], f[k], KL_TOLERANCE)
        c.rel(f"{n} general_loss", e["general_loss"], f["general_loss"], LOSS_TOLERANCE)
        for k in ("top1_agreement", "general_top1_agreement", "pruned_hit_share"):
            diff = abs(e[k] - f[k])
            c.true(f"{n} {k}", diff <= COUNT_TOLERANCE,
                   f"(torch {e[k]:.9g}, native {f[k]:.9g}, diff {diff:.2e} <= {COUNT_TOLERANCE:g})")
    gd, wd = by(got, "done")[0], by(want, "done")[0]
    for k in ("keep", "score", "calibration_tokens", "parameters_before", "parameters_after", "bytes_before", "bytes_after"):
        c.equal(f"{what}: done {k}", gd.get(k), wd.get(k))


def compare_checkpoints(c, what, got_dir, want_dir):
    from safetensors import safe_open
    import torch

    def tensors(d):
        with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
            return f.metadata(), {k: f.get_tensor(k) for k in f.keys()}

    gm, got = tensors(got_dir)
    wm, want = tensors(want_dir)
    c.equal(f"{what}: checkpoint metadata", gm, wm)
    c.equal(f"{what}: checkpoint tensor names", sorted(got), sorted(want))
    bad = [k for k in want if k not in got or got[k].dtype != want[k].dtype or got[k].shape != want[k].shape
           or not torch.equal(got[k], want[k])]
    c.true(f"{what}: every tensor identical (dtype, shape, values; {len(want)} tensors)", not bad, str(bad[:4]) if bad else "")
    with open(os.path.join(got_dir, "config.json")) as f:
        gc = json.load(f)
    with open(os.path.join(want_dir, "config.json")) as f:
        wc = json.load(f)
    c.equal(f"{what}: config.json (parsed)", gc, wc)
    side = sorted(n for n in os.listdir(want_dir) if n not in ("model.safetensors", "config.json"))
    c.equal(f"{what}: other files", sorted(n for n in os.listdir(got_dir) if n not in ("model.safetensors", "config.json")), side)
    for n in side:
        with open(os.path.join(got_dir, n), "rb") as f1, open(os.path.join(want_dir, n), "rb") as f2:
            c.true(f"{what}: {n} copied byte for byte", f1.read() == f2.read())
    with open(os.path.join(got_dir, "model.safetensors"), "rb") as f1, open(os.path.join(want_dir, "model.safetensors"), "rb") as f2:
        same = f1.read() == f2.read()
    print(f"  {what}: model.safetensors byte-identical to the native file: {same} (not required)", flush=True)


def dir_digest(d):
    h = hashlib.sha256()
    for n in sorted(os.listdir(d)):
        h.update(n.encode())
        with open(os.path.join(d, n), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def refused(c, what, cmd, env, expect):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    c.equal(f"{what}: exit code", p.returncode, 1)
    c.true(f"{what}: the error says {expect!r}", expect in p.stderr, p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tuna(ap)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    args.tuna = tuna_path(args.tuna)
    work = tempfile.mkdtemp(prefix="tuna-prune-agree-")
    print(f"work dir {work}; tuna {args.tuna}", flush=True)
    c = Checks()
    try:
        model_dir = os.path.join(work, "model")
        subprocess.run([args.tuna, "init-model", "--out", model_dir, "--vocabulary", VOCAB, "--layers", "3", "--experts", "8",
                        "--top-k", "2", "--seed", "11"], check=True, stdout=subprocess.DEVNULL)
        general = os.path.join(work, "general.jsonl")
        with open(general, "w") as f:
            for i in range(24):
                f.write(json.dumps({"prompt": f"Tell me about item {i}.", "response": f"Item {i} is a small blue thing."}) + "\n")
        base_digest = dir_digest(model_dir)
        native_cache, torch_cache = os.path.join(work, "cache-native"), os.path.join(work, "cache-torch")

        # One cache per side: the first job profiles, the next two reuse the profile (cached on
        # both sides, so both choose from the same float32-rounded sums).
        variants = [("frequency", dict(score="frequency", keep=5, also_evaluate=[8, 3])),
                    ("reap", dict(score="reap", keep=4, also_evaluate=[6, 8])),
                    ("easy_ep", dict(score="easy_ep", keep=3, also_evaluate=[8, 6], super_expert_ratio=1.06))]
        results = {}
        for name, prune in variants:
            print(f"\n== {name}: native vs torch", flush=True)
            d = os.path.join(work, name)
            os.makedirs(d)
            njob = write_job(args.tuna, os.path.join(d, "native.json"), job_spec(model_dir, general, "native", **prune))
            tjob = write_job(args.tuna, os.path.join(d, "torch.json"), job_spec(model_dir, general, "torch", **prune))
            ne = run([args.tuna, "train", njob, "--out", os.path.join(d, "native")], env=env_with_cache(native_cache),
                     what="tuna train")
            te = run(torch_cmd(args, tjob, os.path.join(d, "torch"), os.path.join(d, "work")), env=env_with_cache(torch_cache),
                     what="python3 -m tuna_torch")
            compare_events(c, name, te, ne)
            report = compare_reports(c, name, os.path.join(d, "torch"), os.path.join(d, "native"))
            compare_profiles(c, name, os.path.join(d, "torch", "expert_profile.safetensors"),
                             os.path.join(d, "native", "expert_profile.safetensors"))
            compare_checkpoints(c, name, os.path.join(d, "torch", "model"), os.path.join(d, "native", "model"))
            results[name] = (d, tjob, te, ne, report)
        c.equal("profile computed once per side, then cached", [by(results[n][2], "prune_profile")[0]["cached"] for n, _ in variants],
                [False, True, True])
        c.true("easy_ep with super_expert_ratio 1.06 has super experts (kept)",
               any(l["super_experts"] for l in results["easy_ep"][4]["layers"])
               and all(set(l["super_experts"]) <= set(l["kept"]) for l in results["easy_ep"][4]["layers"]))

        # Other experts implementations profile through the experts module itself: fresh caches,
        # so the profile is computed, compared against the native (fresh) frequency profile.
        import torch
        from tuna_torch import compute
        d, _, _, ne, _ = results["frequency"]
        for experts in ("grouped_mm", "mxfp4"):
            print(f"\n== frequency, experts: {experts} (fresh cache) vs native", flush=True)
            if not compute.grouped_mm_available(torch.device("cpu")):
                print(f"  torch {torch.__version__} has no CPU grouped_mm: skipped")
                continue
            tjob = write_job(args.tuna, os.path.join(d, f"torch-{experts}.json"),
                             job_spec(model_dir, general, "torch", {"experts": experts}, **variants[0][1]))
            out = os.path.join(d, f"torch-{experts}")
            te = run(torch_cmd(args, tjob, out, os.path.join(d, f"work-{experts}")),
                     env=env_with_cache(os.path.join(work, f"cache-{experts}")), what=f"python3 -m tuna_torch ({experts})")
            compare_events(c, experts, te, ne)
            compare_reports(c, experts, out, os.path.join(d, "native"))
            compare_profiles(c, experts, os.path.join(out, "expert_profile.safetensors"),
                             os.path.join(d, "native", "expert_profile.safetensors"))
            compare_checkpoints(c, experts, os.path.join(out, "model"), os.path.join(d, "native", "model"))

        print("\n== python3 -m tuna_torch.prune --prepared (no tuna run; the GPU benchmark's way) vs the worker's way", flush=True)
        d, tjob, te, _, _ = results["frequency"]
        env = torch_env()
        env.pop("TUNA_CACHE_DIR", None)
        env["TUNA_BIN"] = "/nonexistent/tuna"  # must not be needed
        pe = run([sys.executable, "-m", "tuna_torch.prune", tjob, "--out", os.path.join(d, "torch-prepared"),
                  "--prepared", os.path.join(d, "work", "prepared")], env=env, what="python3 -m tuna_torch.prune --prepared")
        strip = lambda ev: [{k: v for k, v in e.items() if k != "seconds"} for e in ev]  # noqa: E731
        c.equal("--prepared: the same events (no cache: computed)", strip(pe), strip(te))
        compare_checkpoints(c, "--prepared", os.path.join(d, "torch-prepared", "model"), os.path.join(d, "torch", "model"))

        print("\n== refusals", flush=True)
        spec = job_spec(model_dir, general, "torch", **variants[0][1])
        bjob = write_job(args.tuna, os.path.join(work, "over-base.json"), spec)
        # --out WORK makes the checkpoint directory WORK/model: the base itself
        refused(c, "output over the base checkpoint", torch_cmd(args, bjob, work, os.path.join(work, "w-over")), torch_env(),
                "the output directory is the base checkpoint")
        c.equal("the base checkpoint is untouched", dir_digest(model_dir), base_digest)
        kjob = write_job(args.tuna, os.path.join(work, "keep-1.json"), job_spec(model_dir, general, "torch", score="reap", keep=1))
        refused(c, "keep below the experts per token", torch_cmd(args, kjob, os.path.join(work, "out-keep-1"),
                                                                os.path.join(work, "w-keep-1")), torch_env(),
                "prune.keep: 1 must be between the experts per token (2) and the experts per layer (8)")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(c.finish())


if __name__ == "__main__":
    main()
