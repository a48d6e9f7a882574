"""The pass/fail harness: named comparisons, each printed as it is made (so a run's log shows
every number), counted; and the relative error they use.

In the tests, the `checks` fixture (Tests/Python/conftest.py) hands a fresh `Checks` to a test
and fails it, naming every failed comparison, when it has any. Scripts outside the suite
(Benchmarks/gpu/gpu_check.py, Benchmarks/gpu/fleet/check.py) call `finish()`: the last line
`N passed, M failed` and the exit code.
"""


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
