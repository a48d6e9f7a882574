#!/usr/bin/env python3
"""Screenshots of a running coordinator's dashboard (the ones in docs/ are of the demo sweep):

    python3 scripts/dashboard_screenshots.py --url http://127.0.0.1:PORT --token-file ~/.tuna/local-PORT.token --sweep 1 --out docs

Needs Debian's chromium and websocket-client (both installed by scripts/test.sh)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Tests", "Python"))
from browser import Browser  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token-file")
    ap.add_argument("--sweep", type=int, required=True)
    ap.add_argument("--job", type=int, help="the job page to show (default: the sweep's best)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    url = args.url.rstrip("/")
    b = Browser(width=1400, height=900)
    try:
        if args.token_file:
            b.login(url, open(os.path.expanduser(args.token_file)).read().strip())
        def shot(path, name, ready=False):
            b.goto(url + path)
            if ready:
                b.wait("window.tunaDash && window.tunaDash.ready", 60)
            if not b.eval("document.title.endsWith('· Tuna')"):
                raise SystemExit(f"{url}{path} did not load (is the coordinator still running?)")
            b.screenshot(os.path.join(args.out, name))
        shot("/", "dashboard-sweeps.png")
        shot("/workers", "dashboard-workers.png")
        shot(f"/sweeps/{args.sweep}", "dashboard-sweep.png", ready=True)
        job = args.job or b.eval("(async () => (await (await fetch('/api/sweeps/%d/jobs')).json())[0].id)()" % args.sweep)
        shot(f"/jobs/{job}", "dashboard-job.png", ready=True)
    finally:
        b.close()
    print(f"wrote dashboard-{{sweeps,sweep,job,workers}}.png to {args.out}")


if __name__ == "__main__":
    main()
