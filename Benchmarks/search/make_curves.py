#!/usr/bin/env python3
"""Makes the search benchmark's learning-curve table: every configuration of space.yaml trained
by the native trainer (`tuna train SPEC --index I`) on the demo model, its validation loss at
every eval, written to curves.csv (config, the swept values, step, val_loss).

    python3 Benchmarks/search/make_curves.py --tuna .build/release/tuna [--jobs 2] [--out curves.csv]

Standard library only. The model is made with `tuna init-model --seed 0` (the README demo's).
Runs `--jobs` trainings at once, each with --threads 1 (the numbers do not depend on it: the
native trainer is deterministic; OPENBLAS_CORETYPE=Haswell is set where this table was made).
"""
import argparse
import concurrent.futures
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tuna", required=True)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "curves.csv"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tuna-search-curves-")
    model = os.path.join(work, "model")
    subprocess.run([args.tuna, "init-model", "--out", model, "--seed", "0", "--vocabulary",
                    os.path.join(REPO, "Tests/TunaTextTests/Fixtures/o200k_base.tiktoken")], check=True)
    with open(os.path.join(HERE, "space.yaml")) as f:
        spec = f.read().replace("@MODEL@", model).replace("@REPO@", REPO)
    spec_path = os.path.join(work, "space.yaml")
    with open(spec_path, "w") as f:
        f.write(spec)
    planned = json.loads(subprocess.run([args.tuna, "submit", "--dry-run", "--json", spec_path],
                                        check=True, capture_output=True, text=True).stdout)
    # The swept fields (space.yaml's lists), read back from each planned job's parameters.
    keys = ["lora.alpha", "lora.rank", "lora.target_parameters", "train.learning_rate", "train.warmup_ratio"]

    def value(job, key):
        section, field = key.split(".")
        return job["params"][section][field]
    print(f"{len(planned)} configurations over {', '.join(keys)}", flush=True)

    def train(i):
        t0 = time.time()
        p = subprocess.run([args.tuna, "train", spec_path, "--index", str(i), "--threads", "1",
                            "--out", os.path.join(work, f"out-{i}")], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"configuration {i} failed: {p.stderr[-2000:]}")
        events = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
        evals = [(e["step"], e["loss"]) for e in events if e.get("event") == "eval"]
        print(f"  configuration {i}: {len(evals)} evals, final {evals[-1][1]:.4f}, {time.time() - t0:.1f} s", flush=True)
        return i, evals

    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        results = dict(pool.map(train, range(len(planned))))
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["config"] + keys + ["step", "val_loss"])
        for i in range(len(planned)):
            values = [json.dumps(value(planned[i], k), separators=(",", ":")) for k in keys]
            for step, loss in results[i]:
                w.writerow([i] + values + [step, repr(loss)])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
