"""Writes jobs/demo/arithmetic.csv, the README demo's data set (NuminaMath-TIR layout:
a header and `problem,solution` columns, RFC 4180 quoting).

Why this data: the demo trains LoRA adapters on a tiny random gpt-oss for about a minute
on two CPU cores, so the data must be learnable that fast and the gain measurable on a
held-out split. Five templated families of two-digit arithmetic give every solution a
fixed shape ("{a} + {b} = {c}."): the template words and the operands copied from the
problem are learnable within a minute, the arithmetic itself is a stretch goal. With the
demo tokenizer (o200k's first 1024 ranks, where numbers split into single digits) a row
is 19-46 tokens (mean 31) of problem + solution; the im_start template adds 37 more (its
markers are plain text there), so rendered rows are 56-83 tokens (mean 68).

Deterministic: SplitMix64 (Sources/TunaRandom, the generator every Tuna module uses) instead of Python's
`random`, so the file is byte-identical on every Python (test_demo_data.py checks the committed one).

    PYTHONPATH=Tests/Python python3 -m reference.demo_data   # (re)write the CSV
"""
import argparse
import csv
import io
import os

from reference.paths import DATA
from reference.splitmix64 import SplitMix64

PER_FAMILY = 100
SEED = 2025


def addition(r):
    a, b = r.between(10, 49), r.between(10, 49)
    return f"What is {a} + {b}?", f"{a} + {b} = {a + b}."


def subtraction(r):
    a = r.between(20, 99)
    b = r.between(1, a - 1)
    return f"What is {a} - {b}?", f"{a} - {b} = {a - b}."


def doubling(r):
    n = r.between(10, 199)
    return f"What is double {n}?", f"Double {n} is {n} + {n} = {2 * n}."


def sequence(r):
    s, k = r.between(1, 30), r.between(2, 9)
    terms = ", ".join(str(s + i * k) for i in range(4))
    return f"What comes next: {terms}?", f"Each step adds {k}: {s + 3 * k} + {k} = {s + 4 * k}."


def larger(r):
    a, b = r.between(10, 99), r.between(10, 99)
    while b == a:
        b = r.between(10, 99)
    hi, lo = max(a, b), min(a, b)
    return f"Which is larger, {a} or {b}?", f"{hi} is larger than {lo}."


def rows():
    r = SplitMix64(SEED)
    seen, out = set(), []
    for family in (addition, subtraction, doubling, sequence, larger):
        count, attempts = 0, 0
        while count < PER_FAMILY:
            attempts += 1
            assert attempts < 100 * PER_FAMILY, f"{family.__name__}: too few distinct problems"
            problem, solution = family(r)
            if problem in seen:
                continue  # distinct problems, so the validation split is held out for real
            seen.add(problem)
            out.append((problem, solution))
            count += 1
    # Fisher-Yates with the same generator: families interleave, so any split mixes them.
    for i in range(len(out) - 1, 0, -1):
        j = next(r) % (i + 1)
        out[i], out[j] = out[j], out[i]
    return out


def render():
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["problem", "solution"])
    w.writerows(rows())
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DATA)
    args = ap.parse_args()
    text = render()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    print(f"wrote {args.out}: {text.count(chr(10)) - 1} rows, {len(text.encode())} bytes")


if __name__ == "__main__":
    main()
