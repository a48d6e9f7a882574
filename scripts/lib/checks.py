"""What every Python reference check shares: the repository's paths, the tuna binary, the seed
argument, and the pass/fail harness whose last line is `N passed, M failed`.

The checks run as modules of the `scripts` package from the repository root, with worker/ on
PYTHONPATH for the torch trainer (scripts/test.sh sets both once):

    PYTHONPATH=.:worker python3 -m scripts.torch.agreement_check --tuna .build/debug/tuna
"""
import os
import random
import subprocess
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
WORKER = os.path.join(REPO, "worker")
FIXTURES = os.path.join(REPO, "Tests", "TunaTextTests", "Fixtures")
VOCAB = os.path.join(FIXTURES, "o200k_base.tiktoken")
DATA = os.path.join(REPO, "jobs", "demo", "arithmetic.csv")


def add_tuna(ap):
    ap.add_argument("--tuna", default=os.environ.get("TUNA_BIN"),
                    help="the tuna CLI (default: $TUNA_BIN, else the debug build's)")


def tuna_path(given):
    """The tuna CLI: `given` (--tuna or $TUNA_BIN), else the debug build's, as an absolute path."""
    if not given:
        bin_path = subprocess.run(["swift", "build", "--show-bin-path"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        given = os.path.join(bin_path, "tuna")
    return os.path.abspath(given)


def add_seed(ap):
    ap.add_argument("--seed", type=int, default=None, help="the draw's seed (default: the clock; printed to rerun)")


def seeded(args, name):
    """The run's seed (--seed, else the clock), printed with the command that reruns it, and a
    generator drawn from it."""
    seed = args.seed if args.seed is not None else int(time.time())
    print(f"{name} seed {seed} (rerun: python3 -m scripts.{name} --seed {seed})", flush=True)
    return seed, random.Random(seed)


class Checks:
    """Counts named checks, printing each as it is made; `finish()` prints the last line and
    returns the exit code."""

    def __init__(self):
        self.passed, self.failed = 0, []

    def rel(self, what, got, want, tol, names=("torch", "native")):
        err = rel_err(got, want)
        ok = err is not None and err < tol
        print(f"  {what}: {names[0]} {fmt(got)}  {names[1]} {fmt(want)}  rel diff {err if err is None else f'{err:.2e}'}"
              f"  (< {tol:g}){'' if ok else '  FAIL'}", flush=True)
        self.count(ok, what)

    def close(self, what, got, want, tol):
        """Two tensors: max |got - want| / max |want| at most `tol`."""
        err = ((got.double() - want.double()).abs().max() / want.double().abs().max().clamp_min(1e-30)).item()
        ok = err <= tol
        print(f"  {what}: max rel diff {err:.2e} (<= {tol:g}){'' if ok else '  FAIL'}", flush=True)
        self.count(ok, what)

    def equal(self, what, got, want):
        ok = got == want
        print(f"  {what}: {got!r}{'' if ok else f' != {want!r}  FAIL'}", flush=True)
        self.count(ok, what)

    def true(self, what, ok, detail=""):
        print(f"  {what}: {'ok' if ok else 'FAIL'}{(' ' + detail) if detail else ''}", flush=True)
        self.count(ok, what)

    def count(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed.append(what)

    def finish(self):
        if self.failed:
            print("failed: " + "; ".join(self.failed))
        print(f"{self.passed} passed, {len(self.failed)} failed")
        return 1 if self.failed else 0


def fmt(x):
    if isinstance(x, float):
        return f"{x:.9g}"
    if isinstance(x, list):
        return "[" + ", ".join(fmt(v) for v in x) + "]"
    return repr(x)


def rel_err(got, want):
    """max |got - want| / max |want| over numbers or lists (None if either side is missing)."""
    if isinstance(got, (int, float)) and isinstance(want, (int, float)):
        got, want = [got], [want]
    if got is None or want is None or len(got) != len(want) or not got:
        return None
    if any(g is None or w is None for g, w in zip(got, want)):
        return None
    scale = max(abs(w) for w in want)
    diff = max(abs(g - w) for g, w in zip(got, want))
    return diff / scale if scale > 0 else diff
