"""How test_prune_agreement compares a torch prune run with the native one: events, reports,
expert profiles and pruned checkpoints. Every function makes named comparisons on a
reference.checks.Checks (the `checks` fixture), printing each number.
"""
import json
import os

from reference.jobs import by

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
