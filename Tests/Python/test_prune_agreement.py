"""`task: prune` jobs on the torch trainer (worker/tuna_torch/prune.py) against the native prune
runner (`tuna train`, Sources/TunaTrain/PruneRunner.swift).

Both get the same job; the torch trainer profiles and evaluates the rows `tuna prepare` writes
(the native runner's own calibration / held-out / general data), so on the CPU in fp32 the
only differences left are floating-point ones. A tiny random gpt-oss from `tuna init-model`
(3 layers, 8 MXFP4 experts, top-2), the demo's arithmetic data (calibration and held-out) and a
small general set. For each score kind (frequency, reap, easy_ep; easy_ep with a low
super_expert_ratio so super experts exist and are kept), one job with an N of its own and two
`also_evaluate` N (one of them every expert), compared (prune_agreement.py, every number
printed): the kept and super experts of every layer, the report's figures; the profile (top-k
counts identical, sums within PROFILE_TOLERANCE); the events in order with the same fields
(losses, KLs, agreements and shares within their tolerances); the pruned checkpoints (tensors,
config.json, tokenizer files).

Then: the torch job with `experts: grouped_mm` and with `experts: mxfp4` (the profile calls the
experts module itself, so every experts implementation must give the same profile); the
torch runner on an already-prepared directory (`python3 -m tuna_torch.prune --prepared`, what
the GPU benchmark uses) equal to the worker's way; an output directory whose model/ is the
base checkpoint refused (exit 1, base untouched); a keep below the experts per token refused.
"""
import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch

from prune_agreement import compare_checkpoints, compare_events, compare_profiles, compare_reports
from reference.jobs import by, run, torch_cmd, torch_env, write_job
from reference.paths import DATA
from tuna_torch import compute

# One cache per side: the first job profiles, the next two reuse the profile (cached on both
# sides, so both choose from the same float32-rounded sums).
VARIANTS = {"frequency": dict(score="frequency", keep=5, also_evaluate=[8, 3]),
            "reap": dict(score="reap", keep=4, also_evaluate=[6, 8]),
            "easy_ep": dict(score="easy_ep", keep=3, also_evaluate=[8, 6], super_expert_ratio=1.06)}


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


def env_with_cache(cache):
    env = torch_env()
    env["TUNA_CACHE_DIR"] = cache
    return env


def dir_digest(d):
    h = hashlib.sha256()
    for n in sorted(os.listdir(d)):
        h.update(n.encode())
        with open(os.path.join(d, n), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


@pytest.fixture(scope="module")
def base(tiny_model, tmp_path_factory):
    """(work directory, base model, general data set, the base's digest)."""
    model_dir = tiny_model(layers=3, experts=8, top_k=2, seed=11)
    work = str(tmp_path_factory.mktemp("prune-agree"))
    general = os.path.join(work, "general.jsonl")
    with open(general, "w") as f:
        for i in range(24):
            f.write(json.dumps({"prompt": f"Tell me about item {i}.", "response": f"Item {i} is a small blue thing."}) + "\n")
    return work, model_dir, general, dir_digest(model_dir)


@pytest.fixture(scope="module")
def runs(tuna, base):
    """{score kind: (directory, torch job, torch events, native events)}, run in VARIANTS' order
    (the first profiles, the next two reuse the cached profile)."""
    work, model_dir, general, _ = base
    results = {}
    for name, prune in VARIANTS.items():
        print(f"\n== {name}: native vs torch", flush=True)
        d = os.path.join(work, name)
        os.makedirs(d)
        njob = write_job(tuna, os.path.join(d, "native.json"), job_spec(model_dir, general, "native", **prune))
        tjob = write_job(tuna, os.path.join(d, "torch.json"), job_spec(model_dir, general, "torch", **prune))
        ne = run([tuna, "train", njob, "--out", os.path.join(d, "native")], env=env_with_cache(os.path.join(work, "cache-native")),
                 what="tuna train")
        te = run(torch_cmd(tuna, tjob, os.path.join(d, "torch"), os.path.join(d, "work")),
                 env=env_with_cache(os.path.join(work, "cache-torch")), what="python3 -m tuna_torch")
        results[name] = (d, tjob, te, ne)
    return results


def compare_all(checks, what, d, out, torch_events, native_events):
    """Events, report, profile and checkpoint of the torch run in `out` against d/native."""
    compare_events(checks, what, torch_events, native_events)
    compare_reports(checks, what, out, os.path.join(d, "native"))
    compare_profiles(checks, what, os.path.join(out, "expert_profile.safetensors"),
                     os.path.join(d, "native", "expert_profile.safetensors"))
    compare_checkpoints(checks, what, os.path.join(out, "model"), os.path.join(d, "native", "model"))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_torch_prune_agrees_with_native(runs, checks, name):
    d, _, te, ne = runs[name]
    compare_all(checks, name, d, os.path.join(d, "torch"), te, ne)


def test_the_profile_is_computed_once_per_side_then_cached(runs, checks):
    checks.equal("profile computed once per side, then cached", [by(runs[n][2], "prune_profile")[0]["cached"] for n in VARIANTS],
                 [False, True, True])


def test_easy_ep_keeps_its_super_experts(runs, checks):
    with open(os.path.join(runs["easy_ep"][0], "torch", "prune_report.json")) as f:
        layers = json.load(f)["layers"]
    checks.true("easy_ep with super_expert_ratio 1.06 has super experts (kept)",
                any(l["super_experts"] for l in layers) and all(set(l["super_experts"]) <= set(l["kept"]) for l in layers))


@pytest.mark.skipif(not compute.grouped_mm_available(torch.device("cpu")), reason=f"torch {torch.__version__} has no CPU grouped_mm")
@pytest.mark.parametrize("experts", ["grouped_mm", "mxfp4"])
def test_other_experts_implementations_profile_alike(tuna, base, runs, checks, experts):
    """They profile through the experts module itself: a fresh cache, so the profile is computed,
    compared against the native (fresh) frequency profile."""
    work, model_dir, general, _ = base
    d, _, _, ne = runs["frequency"]
    tjob = write_job(tuna, os.path.join(d, f"torch-{experts}.json"),
                     job_spec(model_dir, general, "torch", {"experts": experts}, **VARIANTS["frequency"]))
    out = os.path.join(d, f"torch-{experts}")
    te = run(torch_cmd(tuna, tjob, out, os.path.join(d, f"work-{experts}")),
             env=env_with_cache(os.path.join(work, f"cache-{experts}")), what=f"python3 -m tuna_torch ({experts})")
    compare_all(checks, experts, d, out, te, ne)


def test_prepared_runner_is_the_workers_way(runs, checks):
    """python3 -m tuna_torch.prune --prepared (no tuna run; the GPU benchmark's way)."""
    d, tjob, te, _ = runs["frequency"]
    env = torch_env()
    env.pop("TUNA_CACHE_DIR", None)
    env["TUNA_BIN"] = "/nonexistent/tuna"  # must not be needed
    pe = run([sys.executable, "-m", "tuna_torch.prune", tjob, "--out", os.path.join(d, "torch-prepared"),
              "--prepared", os.path.join(d, "work", "prepared")], env=env, what="python3 -m tuna_torch.prune --prepared")
    strip = lambda ev: [{k: v for k, v in e.items() if k != "seconds"} for e in ev]  # noqa: E731
    checks.equal("--prepared: the same events (no cache: computed)", strip(pe), strip(te))
    compare_checkpoints(checks, "--prepared", os.path.join(d, "torch-prepared", "model"), os.path.join(d, "torch", "model"))


def refused(checks, what, cmd, expect):
    p = subprocess.run(cmd, capture_output=True, text=True, env=torch_env(), stdin=subprocess.DEVNULL)
    checks.equal(f"{what}: exit code", p.returncode, 1)
    checks.true(f"{what}: the error says {expect!r}", expect in p.stderr, p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "")


def test_an_output_over_the_base_is_refused(tuna, base, checks):
    work, model_dir, general, base_digest = base
    bjob = write_job(tuna, os.path.join(work, "over-base.json"), job_spec(model_dir, general, "torch", **VARIANTS["frequency"]))
    # --out DIR makes the checkpoint directory DIR/model: the base itself
    refused(checks, "output over the base checkpoint", torch_cmd(tuna, bjob, os.path.dirname(model_dir), os.path.join(work, "w-over")),
            "the output directory is the base checkpoint")
    checks.equal("the base checkpoint is untouched", dir_digest(model_dir), base_digest)


def test_a_keep_below_the_experts_per_token_is_refused(tuna, base, checks):
    work, model_dir, general, _ = base
    kjob = write_job(tuna, os.path.join(work, "keep-1.json"), job_spec(model_dir, general, "torch", score="reap", keep=1))
    refused(checks, "keep below the experts per token", torch_cmd(tuna, kjob, os.path.join(work, "out-keep-1"),
                                                                  os.path.join(work, "w-keep-1")),
            "prune.keep: 1 must be between the experts per token (2) and the experts per layer (8)")
