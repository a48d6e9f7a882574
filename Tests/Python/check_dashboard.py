#!/usr/bin/env python3
"""Checks a running coordinator's dashboard and /metrics from outside, as users' tools see them,
while one of its sweeps runs and after it ends (DashboardTests starts the coordinator, the
workers and the sweep, then runs this):

- every page and every JSON endpoint the pages use, with and without the token; values against
  the coordinator's SQLite database (read-only);
- the live stream: a `points` event arrives and its points are the stored ones;
- a real browser (Debian's chromium over the DevTools protocol): the sweep page draws the jobs
  table, one curve per job with evals, the parallel-coordinates axes and the scatter plots, and a
  new eval appears on the chart without a reload; the job page draws its curves;
- /metrics parsed by prometheus_client's parser, with values equal to the database's once the
  sweep has ended.

Prints one line per check; exits 1 at the first failure with what differed.
"""
import argparse
import hashlib
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from browser import Browser


def ok(what):
    print(f"ok: {what}", flush=True)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Site:
    def __init__(self, url, token):
        self.url, self.token = url.rstrip("/"), token
        self.plain = urllib.request.build_opener(NoRedirect)

    def get(self, path, auth=True, headers=None):
        """(status, headers, body bytes), following no redirect."""
        h = dict(headers or {})
        if auth:
            h["Authorization"] = f"Bearer {self.token}"
        try:
            with self.plain.open(urllib.request.Request(self.url + path, headers=h), timeout=30) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def json(self, path):
        status, _, body = self.get(path)
        assert status == 200, f"GET {path}: {status} {body[:300]!r}"
        return json.loads(body)

    def post_form(self, path, fields):
        data = urllib.parse.urlencode(fields).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with self.plain.open(req, timeout=30) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()


def db_connect(path):
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def stored_curve(db, job, kind):
    """A job's curve from the stored events themselves (not the points table): the later
    attempt's value at a step wins."""
    name = "step" if kind == 0 else "eval"
    out = {}
    for step, loss in db.execute(
            "SELECT json_extract(e.event, '$.step'), json_extract(e.event, '$.loss') FROM events e JOIN attempts a ON a.id = e.attempt_id "
            "WHERE a.job_id = ? AND json_extract(e.event, '$.event') = ? AND json_extract(e.event, '$.step') IS NOT NULL ORDER BY a.number, e.seq",
            (job, name)):
        out[step] = loss
    return out


def check_auth(site, sweep):
    status, _, _ = site.get("/api/sweeps", auth=False)
    assert status == 401, f"/api/sweeps without a token: {status}"
    status, _, _ = site.get("/metrics", auth=False)
    assert status == 401, f"/metrics without a token: {status}"
    status, headers, _ = site.get(f"/sweeps/{sweep}", auth=False)
    assert status == 303 and headers["Location"] == f"/login?next=/sweeps/{sweep}", f"a page without a token: {status} {headers['Location']}"
    status, _, _ = site.get("/api/sweeps", auth=False, headers={"Authorization": "Bearer not-the-token"})
    assert status == 401, f"a wrong bearer token: {status}"
    status, _, body = site.post_form("/login", {"token": "not-the-token", "next": "/"})
    assert status == 401 and b"wrong token" in body, f"login with a wrong token: {status}"
    for elsewhere in ["//elsewhere.example/", "/\\elsewhere.example/", "/\t/elsewhere.example", "https://elsewhere.example/"]:
        status, headers, _ = site.post_form("/login", {"token": site.token, "next": elsewhere})
        assert status == 303 and headers["Location"] == "/", f"login must only send to this site: {elsewhere!r} -> {status} {headers['Location']}"
    status, headers, _ = site.post_form("/login", {"token": site.token, "next": "/workers?x=1"})
    assert status == 303 and headers["Location"] == "/workers?x=1", f"a path on the site is kept: {headers['Location']}"
    cookie = headers["Set-Cookie"] or ""
    status, headers, _ = site.get(f"/login?token={urllib.parse.quote(site.token)}", auth=False)
    assert status == 200 and not headers["Set-Cookie"], "a token in a URL does not log in (it would stay in the history)"
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and site.token not in cookie, f"session cookie: {cookie}"
    session = cookie.split(";")[0]
    status, _, body = site.get("/", auth=False, headers={"Cookie": session})
    assert status == 200 and f'data-sweep="{sweep}"'.encode() in body, f"/ with the session cookie: {status}"
    status, _, _ = site.get("/static/dashboard.js", auth=False)
    assert status == 200, "the script is public (the login page uses it)"
    status, headers, _ = site.get("/logout", auth=False, headers={"Cookie": session})
    assert status == 303 and "Max-Age=0" in (headers["Set-Cookie"] or ""), f"logout: {status}"
    status, _, _ = site.get("/api/sweeps", auth=False, headers={"Cookie": session})
    assert status == 401, f"the session after logout: {status}"
    ok("auth: 401 without or with a wrong token, the login sends only to this site (//, /\\, control characters, schemes refused), "
       "no login by URL, the session cookie is HttpOnly, SameSite=Strict and not the token, logout ends it")


def check_routes(site, db, sweep, workers):
    jobs_db = {r[0]: r[1] for r in db.execute("SELECT id, status FROM jobs WHERE sweep_id = ?", (sweep,))}
    overview = [o for o in site.json("/api/sweeps") if o["sweep"]["id"] == sweep]
    assert len(overview) == 1 and overview[0]["sweep"]["jobs"] == len(jobs_db), f"/api/sweeps: {overview}"
    jobs = site.json(f"/api/sweeps/{sweep}/jobs")
    assert sorted(j["id"] for j in jobs) == sorted(jobs_db), "/api/sweeps/N/jobs: the sweep's jobs"
    for path, needle in [("/", f'data-sweep="{sweep}"'), (f"/sweeps/{sweep}", 'id="sweep-page"'), ("/workers", f">{workers[0]}<")]:
        status, headers, body = site.get(path)
        assert status == 200 and needle.encode() in body and headers["Content-Type"].startswith("text/html"), f"{path}: {status}"
    for job in jobs_db:
        status, _, body = site.get(f"/jobs/{job}")
        assert status == 200 and f'data-job="{job}"'.encode() in body, f"/jobs/{job}: {status}"
        detail = site.json(f"/api/jobs/{job}")
        assert detail["job"]["id"] == job and len(detail["attempts"]) >= (0 if jobs_db[job] == "queued" else 1)
        events = site.json(f"/api/jobs/{job}/events")
        assert len(events) == db.execute("SELECT COUNT(*) FROM events e JOIN attempts a ON a.id = e.attempt_id WHERE a.job_id = ?", (job,)).fetchone()[0] or jobs_db[job] == "running"
    for path, status_wanted in [("/sweeps/999999", 404), ("/jobs/999999", 404), ("/api/jobs/999999", 404), (f"/api/sweeps/{sweep}/curves?kind=bogus", 400),
                                ("/artifacts/" + "0" * 64, 404), ("/api/sweeps/999999/stream", 404)]:
        status, _, _ = site.get(path)
        assert status == status_wanted, f"{path}: {status}, expected {status_wanted}"
    downloaded = 0
    for job in jobs_db:
        for a in site.json(f"/api/jobs/{job}")["artifacts"]:
            status, headers, body = site.get(f"/artifacts/{a['sha256']}?name={urllib.parse.quote(a['name'])}")
            assert status == 200 and hashlib.sha256(body).hexdigest() == a["sha256"] and len(body) == a["size"], f"artifact {a}: {status}"
            assert f'filename="{a["name"].replace("/", "_")}"' in headers["Content-Disposition"], headers["Content-Disposition"]
            downloaded += 1
    assert downloaded >= len(jobs_db), f"only {downloaded} artifacts"
    names = sorted(w["name"] for w in site.json("/api/workers"))
    assert names == sorted(workers), f"/api/workers: {names}"
    ok(f"routes: every page and JSON endpoint for sweep {sweep}'s {len(jobs_db)} jobs, {downloaded} artifact downloads (SHA-256 checked), 404s and 400s")


def check_curves(site, db, sweep):
    """The chart's data is the stored events' (float32), every job with evals is in it."""
    for kind, name in [(0, "train"), (1, "eval")]:
        data = site.json(f"/api/sweeps/{sweep}/curves?kind={name}&limit=2000")
        with_points = {r[0] for r in db.execute(
            "SELECT DISTINCT a.job_id FROM events e JOIN attempts a ON a.id = e.attempt_id JOIN jobs j ON j.id = a.job_id "
            "WHERE j.sweep_id = ? AND json_extract(e.event, '$.event') = ? AND json_extract(e.event, '$.step') IS NOT NULL", (sweep, "step" if kind == 0 else "eval"))}
        got = {s["job"] for s in data["series"]}
        assert with_points <= got, f"{name} curves: jobs {sorted(with_points - got)} missing"
        for s in data["series"]:
            want = stored_curve(db, s["job"], kind)
            steps = sorted(want)
            if len(steps) <= 200:
                assert s["steps"] == steps, f"job {s['job']} {name} steps {s['steps']} != {steps}"
            for step, v in zip(s["steps"], s["values"]):
                assert abs(v - want[step]) <= 1e-6 * max(1, abs(want[step])), f"job {s['job']} {name} step {step}: {v} != {want[step]}"
    ok("curves: every job's train and eval points equal the stored events (float32)")


def check_stream(site, db, sweep, timeout=60):
    u = urllib.parse.urlparse(site.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    conn.request("GET", f"/api/sweeps/{sweep}/stream", headers={"Authorization": f"Bearer {site.token}"})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream", f"stream: {r.status}"
    event, deadline = None, time.time() + timeout
    while time.time() < deadline:
        line = r.fp.readline().decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == "points":
            d = json.loads(line[6:])
            conn.close()
            for kind, step, value in d["points"]:
                want = stored_curve(db, d["job"], kind).get(step)
                assert want is not None and abs(value - want) <= 1e-6 * max(1, abs(want)), f"streamed point {kind},{step},{value} of job {d['job']}: stored {want}"
            ok(f"stream: a `points` event for job {d['job']} ({len(d['points'])} points), equal to the stored events")
            return
    raise AssertionError("no points event on the stream")


def check_browser(site, db, sweep, varying, screenshots):
    b = Browser()
    try:
        b.login(site.url, site.token, f"/sweeps/{sweep}")
        assert b.eval("location.pathname") == f"/sweeps/{sweep}", b.eval("location.href")
        b.wait("window.tunaDash && window.tunaDash.ready", 30, "the sweep page to draw")
        assert not b.eval("window.tunaDash.error || ''"), b.eval("window.tunaDash.error")
        jobs = db.execute("SELECT COUNT(*) FROM jobs WHERE sweep_id = ?", (sweep,)).fetchone()[0]
        dash = b.eval("window.tunaDash")
        assert dash["rows"] == jobs, f"table rows {dash['rows']} != {jobs} jobs"
        assert dash["axes"] == len(varying) + 1, f"parallel axes {dash['axes']} != {len(varying)} varied + the objective"
        assert dash["lines"] == jobs, f"parallel-coordinates lines {dash['lines']} != {jobs} jobs"
        # A point per job with an objective in each scatter plot (more come as jobs end: wait until they agree).
        def with_objective():
            return db.execute("SELECT COUNT(*) FROM jobs WHERE sweep_id = ? AND final_val_loss IS NOT NULL", (sweep,)).fetchone()[0]
        deadline = time.time() + 20
        while b.eval("window.tunaDash.scatterPoints") != [with_objective()] * len(varying) and time.time() < deadline:
            time.sleep(0.2)
        assert b.eval("window.tunaDash.scatterPoints") == [with_objective()] * len(varying), f"scatter points {b.eval('window.tunaDash.scatterPoints')} != {with_objective()} jobs with an objective, per plot"
        rendered = b.eval("document.querySelectorAll('#jobs tbody tr').length")
        assert rendered == jobs, f"{rendered} rows in the DOM"
        # One curve per job that has an eval (more appear as jobs start: wait until they agree).
        def with_evals():
            return db.execute("SELECT COUNT(DISTINCT job_id) FROM points p JOIN jobs j ON j.id = p.job_id WHERE j.sweep_id = ? AND p.kind = 1", (sweep,)).fetchone()[0]
        b.wait(f"window.tunaDash.series > 0", 30, "a curve")
        deadline = time.time() + 20
        while b.eval("window.tunaDash.series") != with_evals() and time.time() < deadline:
            time.sleep(0.2)
        assert b.eval("window.tunaDash.series") == with_evals(), f"series {b.eval('window.tunaDash.series')} != jobs with evals {with_evals()}"
        ok(f"browser: the sweep page drew {jobs} table rows, {b.eval('window.tunaDash.series')} curves (one per job with evals), "
           f"{len(varying) + 1} parallel axes with a line per job, {len(varying)} scatter plots with a point per job with an objective")
        # A new eval arrives on the chart without a reload.
        b.eval("window.__stillHere = true")
        before, loads = b.eval("window.tunaDash.evalPoints"), b.eval("window.tunaDash.loads")
        b.wait(f"window.tunaDash.evalPoints > {before}", 60, "a new eval on the chart")
        assert b.eval("window.__stillHere === true") and b.eval("window.tunaDash.loads") == loads, "the page reloaded"
        ok(f"browser: a new eval appeared without a reload ({before} -> {b.eval('window.tunaDash.evalPoints')} eval points)")
        if screenshots:
            b.screenshot(f"{screenshots}/dashboard-sweep.png")
        job = db.execute("SELECT id FROM jobs WHERE sweep_id = ? AND status != 'queued' ORDER BY id LIMIT 1", (sweep,)).fetchone()[0]
        b.goto(f"{site.url}/jobs/{job}")
        b.wait("window.tunaDash && window.tunaDash.ready", 30, "the job page to draw")
        assert b.eval("window.tunaDash.trainPoints") > 0 and b.eval("window.tunaDash.evalPoints") > 0, "the job page draws train and validation loss"
        ok(f"browser: job {job}'s page drew its train and validation curves ({b.eval('window.tunaDash.points')} points)")
        if screenshots:
            b.screenshot(f"{screenshots}/dashboard-job.png")
            for path, name in [("/", "dashboard-sweeps.png"), ("/workers", "dashboard-workers.png")]:
                b.goto(site.url + path)
                b.screenshot(f"{screenshots}/{name}")
    finally:
        b.close()


def db_bytes(db_path):
    return sum(os.path.getsize(p) for p in [db_path, db_path + "-wal"] if os.path.exists(p))


def check_metrics(site, db, db_path, sweep, workers):
    size_before = db_bytes(db_path)   # the workers' heartbeats still write: the scrape's size lies between
    status, headers, body = site.get("/metrics")
    size_after = db_bytes(db_path)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4"), f"/metrics: {status} {headers['Content-Type']}"
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    def value(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        assert key in samples, f"/metrics has no {name}{labels}"
        return samples[key]
    for status_name, n in db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status"):
        assert value("tuna_jobs", state=status_name) == n, f"tuna_jobs{{state={status_name}}} {value('tuna_jobs', state=status_name)} != {n}"
    assert value("tuna_jobs", state="failed") == db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'failed'").fetchone()[0]
    assert value("tuna_workers_connected") == len(workers)
    assert value("tuna_workers_quarantined") == db.execute("SELECT COUNT(*) FROM workers WHERE quarantined").fetchone()[0]
    attempts = db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
    assert value("tuna_leases_granted_total") == attempts, f"leases granted {value('tuna_leases_granted_total')} != {attempts} attempts"
    events = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    assert value("tuna_events_ingested_total") == events, f"events ingested {value('tuna_events_ingested_total')} != {events} stored"
    artifact_bytes = db.execute("SELECT COALESCE(SUM(size), 0) FROM artifacts").fetchone()[0]
    assert value("tuna_artifact_ingested_bytes_total") >= artifact_bytes, f"artifact bytes {value('tuna_artifact_ingested_bytes')} < {artifact_bytes} stored"
    assert value("tuna_leases_expired_total") == 0, "no lease expired in this sweep"
    assert value("tuna_dispatch_seconds_count") >= 1 and value("tuna_dispatch_seconds_sum") > 0
    queued = dict(db.execute("SELECT trainer, COUNT(*) FROM jobs WHERE status = 'queued' GROUP BY trainer").fetchall())
    for trainer in ["native", "torch", "command"]:
        assert value("tuna_queue_depth", trainer=trainer) == queued.get(trainer, 0)
    assert size_before <= value("tuna_database_bytes") <= size_after, f"database bytes {value('tuna_database_bytes')} not in [{size_before}, {size_after}]"
    running = [k for k in samples if k[0] == "tuna_job_tokens_per_second"]
    assert not running, f"a tokens/s series for a job no longer running: {running}"
    ok(f"metrics: parsed by prometheus_client; jobs by state, workers, {attempts} leases, {events} events, artifact bytes, queue depths and database size equal the database")


def check_tokens_per_second(site, sweep):
    """While jobs run, each has a tokens/s series labelled with its job and sweep."""
    deadline = time.time() + 30
    while time.time() < deadline:
        _, _, body = site.get("/metrics")
        series = [s for f in text_string_to_metric_families(body.decode()) for s in f.samples if s.name == "tuna_job_tokens_per_second"]
        if series:
            assert all(s.labels["sweep"] == str(sweep) and s.value > 0 for s in series), series
            ok(f"metrics: tokens/s of {len(series)} running job(s), labelled by job and sweep")
            return
        time.sleep(0.2)
    raise AssertionError("no tuna_job_tokens_per_second series while the sweep ran")


def start_coordinator(tuna, work, *args):
    """A coordinator of its own for the token checks: (process, dashboard URL)."""
    port_file, http_file = os.path.join(work, "port"), os.path.join(work, "http-port")
    p = subprocess.Popen([tuna, "coordinator", "--listen", "127.0.0.1:0", "--port-file", port_file, "--data-dir", os.path.join(work, "data"),
                          "--http", "127.0.0.1:0", "--http-port-file", http_file, *args], stderr=open(os.path.join(work, "log"), "w"))
    deadline = time.time() + 30
    while not (os.path.exists(http_file) and open(http_file).read().strip()):
        assert time.time() < deadline and p.poll() is None, open(os.path.join(work, "log")).read()
        time.sleep(0.05)
    return p, f"http://127.0.0.1:{int(open(http_file).read())}"


def check_roles_and_open_mode(tuna):
    """With a tokens file: a worker token is refused, a read token reads, and a session ends when
    its token leaves the file (SIGHUP). With no token at all (--open-loopback): no login, but only
    for a loopback Host (another site's page re-pointed at 127.0.0.1 is refused)."""
    work = tempfile.mkdtemp(prefix="tuna-dash-roles-")
    tokens = os.path.join(work, "tokens")
    with open(tokens, "w") as f:
        f.write("read grafana r3ad-token-0123456789\nworker gpu w0rker-token-0123456789\n")
    p, url = start_coordinator(tuna, work, "--tokens", tokens)
    try:
        status, _, body = Site(url, "w0rker-token-0123456789").get("/api/sweeps")
        assert status == 403 and b"worker token" in body, f"a worker token: {status} {body[:200]!r}"
        reader = Site(url, "r3ad-token-0123456789")
        assert reader.get("/api/sweeps")[0] == 200 and reader.get("/metrics")[0] == 200, "a read token reads"
        status, headers, _ = reader.post_form("/login", {"token": reader.token, "next": "/"})
        session = headers["Set-Cookie"].split(";")[0]
        assert reader.get("/workers", auth=False, headers={"Cookie": session})[0] == 200
        with open(tokens, "w") as f:
            f.write("worker gpu w0rker-token-0123456789\n")
        p.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while reader.get("/api/sweeps", auth=False, headers={"Cookie": session})[0] != 401:
            assert time.time() < deadline, "the session outlived its token"
            time.sleep(0.1)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    work = tempfile.mkdtemp(prefix="tuna-dash-open-")
    p, url = start_coordinator(tuna, work, "--open-loopback")
    try:
        site = Site(url, "")
        status, _, body = site.get("/", auth=False)
        assert status == 200 and b"Log out" not in body, f"open: no login ({status})"
        assert site.get("/api/sweeps", auth=False, headers={"Host": "localhost:1234"})[0] == 200
        status, _, _ = site.get("/api/sweeps", auth=False, headers={"Host": "rebound.example:8080"})
        assert status == 403, f"open, another site's Host: {status}"
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    ok("roles: a worker token is refused (403), a read token reads pages and /metrics, a session ends when its token is removed (SIGHUP); "
       "with no token, no login, and a non-loopback Host is refused")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--sweep", type=int, required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--workers", required=True, help="comma-separated worker names")
    ap.add_argument("--varying", required=True, help="comma-separated varied fields")
    ap.add_argument("--screenshots")
    ap.add_argument("--tuna", required=True, help="the tuna binary (for coordinators of its own: roles, open mode)")
    args = ap.parse_args()
    site, db, workers = Site(args.url, args.token), db_connect(args.db), args.workers.split(",")
    try:
        check_auth(site, args.sweep)
        check_roles_and_open_mode(args.tuna)
        check_tokens_per_second(site, args.sweep)
        check_stream(site, db, args.sweep)
        check_browser(site, db, args.sweep, args.varying.split(","), args.screenshots)
        deadline = time.time() + 180
        while db.execute("SELECT COUNT(*) FROM jobs WHERE sweep_id = ? AND status IN ('queued', 'running', 'paused')", (args.sweep,)).fetchone()[0]:
            assert time.time() < deadline, "the sweep did not end"
            time.sleep(0.2)
        time.sleep(0.5)   # the last acknowledgements
        check_routes(site, db, args.sweep, workers)
        check_curves(site, db, args.sweep)
        check_metrics(site, db, args.db, args.sweep, workers)
    except AssertionError as e:
        print(f"FAILED: {e}", flush=True)
        sys.exit(1)
    print("all dashboard checks passed")


if __name__ == "__main__":
    main()
