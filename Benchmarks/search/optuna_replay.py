#!/usr/bin/env python3
"""The search benchmark's baseline: Optuna, as its users run it, replayed on the same
learning-curve table with the same simulated workers and time model as SearchBench (one
training step per unit of time per worker; events at every eval, earliest first, ties to the
lower worker), then one table of every method with ratios against the named baselines.

    python3 Benchmarks/search/optuna_replay.py --curves curves.csv --tuna-results tuna.json [--seeds 20] [--workers 4]

Optuna methods (defaults throughout, the sampler seeded per seed):
  optuna tpe            TPESampler(seed=s): each trial to the end
  optuna tpe + sh       TPESampler(seed=s) with SuccessiveHalvingPruner()
  optuna tpe + hyperband TPESampler(seed=s) with HyperbandPruner()
and, so that no baseline is weaker than its best setting for this table, the same two pruners
given Tuna's ASHA resources (first rung 3 steps, eta 3, 81 steps in all):
  optuna tpe + sh (3, eta 3)        SuccessiveHalvingPruner(min_resource=3, reduction_factor=3)
  optuna tpe + hyperband (3..81, eta 3) HyperbandPruner(min_resource=3, max_resource=81, reduction_factor=3)
Optuna's TPE samples the categorical table with replacement: a configuration it proposes again is
trained (and charged) again, as it would be in a real study. Tuna's TPE does not re-propose a
tried configuration while an untried one exists.
Each trial reports its validation loss at every eval step (`trial.report(value, step)`) and
stops when `trial.should_prune()` says so. Trials run in parallel through ask/tell, as with
several workers sharing one study.
"""
import argparse
import csv
import json
import math
import statistics

import optuna

BUDGETS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0]


def load(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    header = rows[0]
    keys = header[1:-2]
    points, curves = {}, {}
    for r in rows[1:]:
        c = int(r[0])
        points[c] = tuple(r[1:-2])
        curves.setdefault(c, {})[int(r[-2])] = float(r[-1])
    n = len(points)
    return keys, [points[c] for c in range(n)], [curves[c] for c in range(n)]


def replay(keys, points, curves, sampler, pruner, workers, name, seed):
    max_step = max(curves[0])
    every = min(curves[0])
    grid = len(curves) * max_step
    final = [c[max_step] for c in curves]
    target = min(final) * 1.01
    choices = {k: sorted({p[i] for p in points}) for i, k in enumerate(keys)}
    distributions = {k: optuna.distributions.CategoricalDistribution(v) for k, v in choices.items()}
    by_point = {p: i for i, p in enumerate(points)}
    # A fixed study name: HyperbandPruner assigns brackets by a hash of it and the trial number.
    study = optuna.create_study(study_name=f"{name} {seed}", direction="minimize", sampler=sampler, pruner=pruner)
    # (trial, config, start time, steps trained, last step whose eval was handled): events are
    # at evals, and several trials may reach one at the same time; each is handled.
    running = [None] * workers
    spent, time, found, best, log = 0, 0, None, math.inf, []

    def start(w):
        if spent >= grid:
            running[w] = None
            return
        trial = study.ask(distributions)
        config = by_point[tuple(trial.params[k] for k in keys)]
        running[w] = [trial, config, time, 0, 0]

    for w in range(workers):
        start(w)
    # Nothing new starts once the grid's compute is spent; what runs then finishes.
    while any(r is not None for r in running):
        nxt = None
        for w, r in enumerate(running):
            if r is None:
                continue
            t = r[2] + r[4] + every
            if nxt is None or t < nxt[1]:
                nxt = (w, t)
        w, t = nxt
        for r in running:  # every running trial trained until t
            if r is None:
                continue
            now = t - r[2]
            spent += now - r[3]
            r[3] = now
        time = t
        running[w][4] += every
        trial, config, _, _, step = running[w]
        value = curves[config][step]
        trial.report(value, step)
        if step == max_step:
            study.tell(trial, value)
            best = min(best, value)
            log.append((spent, best))
            if found is None and value <= target and spent <= grid:
                found = spent
            start(w)
        elif trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            start(w)
    best_at = [next((b for s, b in reversed(log) if s <= f * grid), math.inf) for f in BUDGETS]
    return {"method": name, "seed": seed, "stepsToFind": found, "bestAt": best_at}


def summarize(results, grid, methods):
    out = {}
    for m in methods:
        rs = [r for r in results if r["method"] == m]
        pct = sorted(100 * (r["stepsToFind"] if r["stepsToFind"] is not None else grid) / grid for r in rs)
        mean_best = []
        for b in range(len(BUDGETS)):
            known = [r["bestAt"][b] for r in rs if r["bestAt"][b] is not None and math.isfinite(r["bestAt"][b])]
            mean_best.append(statistics.mean(known) if len(known) == len(rs) else None)
        out[m] = {"found": sum(r["stepsToFind"] is not None for r in rs), "seeds": len(rs),
                  "median": statistics.median(pct), "mean": statistics.mean(pct), "best_at": mean_best}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--curves", required=True)
    ap.add_argument("--tuna-results", required=True, help="SearchBench --json output (same table, seeds and workers)")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--json", help="write every result here")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    keys, points, curves = load(args.curves)
    grid = len(curves) * max(curves[0])
    results = []
    for seed in range(args.seeds):
        results.append(replay(keys, points, curves, optuna.samplers.TPESampler(seed=seed), optuna.pruners.NopPruner(),
                              args.workers, "optuna tpe", seed))
        results.append(replay(keys, points, curves, optuna.samplers.TPESampler(seed=seed), optuna.pruners.SuccessiveHalvingPruner(),
                              args.workers, "optuna tpe + sh", seed))
        results.append(replay(keys, points, curves, optuna.samplers.TPESampler(seed=seed), optuna.pruners.HyperbandPruner(),
                              args.workers, "optuna tpe + hyperband", seed))
        first, last = min(curves[0]), max(curves[0])
        results.append(replay(keys, points, curves, optuna.samplers.TPESampler(seed=seed),
                              optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=3),
                              args.workers, "optuna tpe + sh (3, eta 3)", seed))
        results.append(replay(keys, points, curves, optuna.samplers.TPESampler(seed=seed),
                              optuna.pruners.HyperbandPruner(min_resource=first, max_resource=last, reduction_factor=3),
                              args.workers, "optuna tpe + hyperband (3..81, eta 3)", seed))
    with open(args.tuna_results) as f:
        tuna = json.load(f)
    for r in tuna:
        r["stepsToFind"] = r.get("stepsToFind")
        r["bestAt"] = [b if b is not None else math.inf for b in r["bestAt"]]
    everything = tuna + results
    if args.json:
        with open(args.json, "w") as f:
            json.dump(everything, f, indent=1, default=str)
    methods = list(dict.fromkeys(r["method"] for r in everything))
    s = summarize(everything, grid, methods)
    print(f"optuna {optuna.__version__}; {args.seeds} seeds; {args.workers} workers; grid compute {grid} steps")
    print("\ncompute to find a configuration within 1% of the table's best final val_loss (% of the grid's; not found: 100%)")
    print("| method | found | median | mean | median vs grid | median vs optuna tpe | mean vs optuna tpe |")
    print("|---|---|---|---|---|---|---|")
    ot = s["optuna tpe"]
    for m in methods:
        x = s[m]
        print(f"| {m} | {x['found']}/{x['seeds']} | {x['median']:.1f}% | {x['mean']:.1f}% | {x['median'] / 100:.2f}x "
              f"| {x['median'] / ot['median']:.2f}x | {x['mean'] / ot['mean']:.2f}x |")
    print("\nbest known final val_loss at each budget (fraction of the grid's compute), mean over seeds ('-': some seed knew none yet)")
    print("| method | " + " | ".join(f"{100 * b:.0f}%" for b in BUDGETS) + " |")
    print("|---|" + "---|" * len(BUDGETS))
    for m in methods:
        print(f"| {m} | " + " | ".join("-" if v is None else f"{v:.4f}" for v in s[m]["best_at"]) + " |")


if __name__ == "__main__":
    main()
