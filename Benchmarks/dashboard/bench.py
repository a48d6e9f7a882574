#!/usr/bin/env python3
"""The dashboard on a 10,000-job sweep with 200 evals per job (Benchmarks/dashboard/README.md).

Tuna: a real `tuna submit` of a 100 x 100 grid (the coordinator expands and stores it), then the
jobs' results, one attempt each and 200 validation-loss points per job written into the stopped
coordinator's database (2,000,000 points: running 10,000 jobs is not the point here), then the
coordinator restarted with --http and measured: the sweep page's first byte and its data
endpoints, and, in headless chromium, the time from navigation until the page has drawn the
table, the curves and the parallel coordinates (`tunaDash.readyMs`).

Baseline: optuna-dashboard (what Optuna users open) on the same study, 10,000 trials with the
same two parameters, values and 200 intermediate values each, in its in-memory storage (its
fastest), served by its own `run_server`: its study page's first byte, its study data endpoint,
and, in the same browser, the time until its first plot is drawn.

Prints one table with medians and Tuna/optuna-dashboard ratios.
"""
import argparse
import http.client
import json
import math
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "Python"))
from browser import Browser  # noqa: E402

N_SIDE, EVALS = 100, 200


def loss_at(lr_i, scale_i, k):
    """A plausible validation curve: decays with the eval number, best at a middle lr."""
    best = 0.8 + 0.002 * abs(lr_i - 60) + 0.001 * scale_i
    return best + 2.0 / (1 + 0.15 * (k + 1) * (1 + lr_i / 50))


def timed_get(host, port, path, headers):
    """(first byte seconds, total seconds, bytes) of one GET on a fresh connection."""
    t0 = time.perf_counter()
    c = http.client.HTTPConnection(host, port, timeout=120)
    c.request("GET", path, headers=headers)
    r = c.getresponse()   # returns once the status line and headers are in: the first bytes
    t1 = time.perf_counter()
    body = r.read()
    t2 = time.perf_counter()
    c.close()
    assert r.status == 200, f"{path}: {r.status} {body[:200]!r}"
    return t1 - t0, t2 - t0, len(body)


def measure(host, port, path, headers, runs):
    timed_get(host, port, path, headers)  # warm
    xs = [timed_get(host, port, path, headers) for _ in range(runs)]
    return statistics.median(x[0] for x in xs), statistics.median(x[1] for x in xs), xs[0][2]


def wait_file(path, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and open(path).read().strip():
            return int(open(path).read())
        time.sleep(0.05)
    raise SystemExit(f"{path} never appeared")


def tuna_setup(tuna, work):
    data = os.path.join(work, "data")
    port_file = os.path.join(work, "port")
    coord = subprocess.Popen([tuna, "coordinator", "--listen", "127.0.0.1:0", "--port-file", port_file, "--data-dir", data, "--open-loopback"],
                             stderr=open(os.path.join(work, "coordinator-1.log"), "w"))
    port = wait_file(port_file)
    lrs = [round(1e-5 * 10 ** (i / 33), 8) for i in range(N_SIDE)]
    spec = os.path.join(work, "spec.yaml")
    with open(spec, "w") as f:
        f.write(f"name: dashboard-10k\ntrainer: command\ncommand: [\"/bin/true\"]\nlr: {json.dumps(lrs)}\nloss_scale: {json.dumps(list(range(1, N_SIDE + 1)))}\n")
    subprocess.run([tuna, "submit", spec, "--coordinator", f"127.0.0.1:{port}"], check=True, stdout=subprocess.DEVNULL)
    coord.send_signal(signal.SIGTERM)
    coord.wait(60)
    db = sqlite3.connect(os.path.join(data, "tuna.sqlite"))
    jobs = db.execute("SELECT id, idx FROM jobs ORDER BY id").fetchall()
    assert len(jobs) == N_SIDE * N_SIDE, len(jobs)
    now = int(time.time() * 1000)
    points, updates, attempts = [], [], []
    for job, idx in jobs:
        lr_i, scale_i = divmod(idx, N_SIDE)
        curve = [loss_at(lr_i, scale_i, k) for k in range(EVALS)]
        points += [(job, 1, 10 * (k + 1), v) for k, v in enumerate(curve)]
        updates.append((curve[-1], min(curve), curve[-1] * 0.95, 5000.0, job))
        attempts.append((job, "w", now - 3_600_000, now))
    with db:
        db.executemany("INSERT INTO points (job_id, kind, step, value) VALUES (?, ?, ?, ?)", points)
        db.executemany("UPDATE jobs SET status = 'succeeded', attempts = 1, final_val_loss = ?, best_val_loss = ?, final_train_loss = ?, tokens_per_s = ? WHERE id = ?", updates)
        db.executemany("INSERT INTO attempts (job_id, number, worker_id, state, lease_expires_ms, started_ms, ended_ms) VALUES (?, 1, ?, 'succeeded', 0, ?, ?)", attempts)
    db.close()
    return data, lrs


def tuna_measure(tuna, work, data, runs, browser):
    port_file, http_file = os.path.join(work, "port2"), os.path.join(work, "http")
    coord = subprocess.Popen([tuna, "coordinator", "--listen", "127.0.0.1:0", "--port-file", port_file, "--data-dir", data, "--open-loopback",
                              "--http", "127.0.0.1:0", "--http-port-file", http_file], stderr=open(os.path.join(work, "coordinator-2.log"), "w"))
    try:
        port = wait_file(http_file)
        out = {}
        for name, path in [("page", "/sweeps/1"), ("jobs", "/api/sweeps/1/jobs"), ("curves", "/api/sweeps/1/curves?kind=eval"), ("sweeps", "/")]:
            out[name] = measure("127.0.0.1", port, path, {}, runs)
        loads = []
        for _ in range(5):
            browser.goto("about:blank")
            browser.goto(f"http://127.0.0.1:{port}/sweeps/1")
            browser.wait("window.tunaDash && window.tunaDash.ready", 60)
            d = browser.eval("window.tunaDash")
            assert d["rows"] == 200 and d["jobs"] == N_SIDE * N_SIDE and d["series"] == 100 and d["axes"] == 3, d
            loads.append(d["readyMs"] / 1000)
        out["browser"] = statistics.median(loads)
        return out
    finally:
        coord.send_signal(signal.SIGTERM)
        coord.wait(60)


def optuna_measure(lrs, runs, browser):
    import wsgiref.simple_server
    import optuna
    import optuna_dashboard
    wsgiref.simple_server.WSGIRequestHandler.log_message = lambda *a: None   # its access log, a line per request
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="dashboard-10k")
    dists = {"lr": optuna.distributions.CategoricalDistribution(lrs),
             "loss_scale": optuna.distributions.CategoricalDistribution(list(range(1, N_SIDE + 1)))}
    t0 = time.time()
    trials = []
    for idx in range(N_SIDE * N_SIDE):
        lr_i, scale_i = divmod(idx, N_SIDE)
        curve = [loss_at(lr_i, scale_i, k) for k in range(EVALS)]
        trials.append(optuna.trial.create_trial(params={"lr": lrs[lr_i], "loss_scale": scale_i + 1}, distributions=dists, value=curve[-1],
                                                intermediate_values={10 * (k + 1): v for k, v in enumerate(curve)}))
    study.add_trials(trials)
    print(f"(optuna study of {len(trials)} trials built in {time.time() - t0:.0f} s)", flush=True)
    with socket_port() as port:
        threading.Thread(target=optuna_dashboard.run_server, args=(storage,), kwargs={"host": "127.0.0.1", "port": port}, daemon=True).start()
        deadline = time.time() + 60
        while True:
            try:
                timed_get("127.0.0.1", port, "/api/studies", {})
                break
            except (ConnectionRefusedError, OSError):
                assert time.time() < deadline, "optuna-dashboard did not start"
                time.sleep(0.2)
        out = {}
        for name, path in [("page", "/dashboard/studies/0"), ("jobs", "/api/studies/0?after=0"), ("sweeps", "/dashboard")]:
            # Its study endpoint takes seconds: 3 runs of it.
            out[name] = measure("127.0.0.1", port, path, {}, min(runs, 3) if name == "jobs" else runs)
        loads = []
        for _ in range(2):   # each takes long (see the README): 2 loads
            browser.goto("about:blank")
            browser.goto(f"http://127.0.0.1:{port}/dashboard/studies/0")
            # Drawn with the data: the study's trials have arrived and a plot has points (its
            # plots are drawn empty first, before the trials come).
            browser.wait("performance.getEntriesByType('resource').some((e) => e.name.includes('/api/studies/0?') && e.responseEnd > 0)"
                         " && document.querySelectorAll('.js-plotly-plot .scatterlayer .trace .points path').length > 0", 300,
                         "optuna-dashboard's plot of the trials")
            # (its script holds the page's main thread meanwhile: the check answers when it lets go)
            loads.append(browser.eval("performance.now()") / 1000)
        out["browser"] = statistics.median(loads)
        return out


class socket_port:
    def __enter__(self):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *a):
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tuna", required=True)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--no-optuna", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tuna-dash-bench-")
    browser = Browser()
    try:
        t0 = time.time()
        data, lrs = tuna_setup(args.tuna, work)
        print(f"(tuna sweep of {N_SIDE * N_SIDE} jobs x {EVALS} evals stored in {time.time() - t0:.0f} s; database {os.path.getsize(os.path.join(data, 'tuna.sqlite')) >> 20} MiB)", flush=True)
        tuna = tuna_measure(args.tuna, work, data, args.runs, browser)
        base = None if args.no_optuna else optuna_measure(lrs, args.runs, browser)
    finally:
        browser.close()
    ms = lambda s: f"{s * 1000:8.1f} ms"
    # Tuna's time over the baseline's; below 1/100 as "1/N" (N times less).
    ratio = lambda t, b: "" if not b else f"{t / b:6.2f}x" if t / b >= 0.01 else f"1/{b / t:.0f}"
    print(f"\n10,000 jobs x 200 evals, medians of {args.runs} fresh connections (optuna-dashboard's study data: of 3; browser: of 5 loads, optuna-dashboard's 2)")
    print(f"{'what':50} {'Tuna':>12} {'optuna-dashboard':>18} {'ratio':>8}")
    rows = [("sweep page, first byte", "page", 0), ("sweep page, whole", "page", 1), ("study/sweep data (jobs + values), first byte", "jobs", 0),
            ("study/sweep data (jobs + values), whole", "jobs", 1), ("curves (Tuna only: best 100 jobs, 200 points each)", "curves", 1),
            ("sweeps list page, whole", "sweeps", 1)]
    for label, key, i in rows:
        t = tuna[key][i]
        b = base[key][i] if base and key in base else None
        print(f"{label:50} {ms(t):>12} {ms(b) if b else '—':>18} {ratio(t, b):>8}")
    print(f"{'data sizes: Tuna jobs / curves; optuna study':50} {tuna['jobs'][2] >> 10:>9} KiB / {tuna['curves'][2] >> 10} KiB; {base['jobs'][2] >> 10 if base else '—'} KiB")
    t, b = tuna["browser"], base["browser"] if base else None
    print(f"{'browser: navigation to drawn with the data':50} {ms(t):>12} {ms(b) if b else '—':>18} {ratio(t, b):>8}")
    goals = tuna["page"][0] < 0.1 and tuna["browser"] < 1.0
    print(f"\ngoals (first byte < 100 ms, interactive < 1 s): {'met' if goals else 'NOT met'}")


if __name__ == "__main__":
    main()
