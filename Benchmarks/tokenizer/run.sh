#!/usr/bin/env bash
# Tokenizer benchmark: Swift (TunaText, release build) vs tiktoken (Rust), single-threaded,
# same ~8 MB text (the multilingual test corpus plus the fuzz strings, repeated).
# Prints MB/s and tokens/s for both and the ratio; also checks both produced the same count.
#
#   Benchmarks/tokenizer/run.sh            # uses the package at the repo root (product TokenizerBench)
#   Benchmarks/tokenizer/run.sh my.txt     # benchmark another UTF-8 text file instead
#   TUNA_BENCH_PACKAGE=/tmp/dev-text Benchmarks/tokenizer/run.sh
# Needs: python3 with tiktoken (pip install tiktoken==0.14.0).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
pkg="${TUNA_BENCH_PACKAGE:-$root}"
ranks="$root/Tests/TunaTextTests/Fixtures/o200k_base.tiktoken"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

text="${1:-$work/bench.txt}"
[ -n "${1:-}" ] || python3 - "$root/Tests/TunaTextTests/Fixtures" "$work/bench.txt" <<'PY'
import json, sys
fx, out = sys.argv[1], sys.argv[2]
corpus = json.load(open(f"{fx}/tokenizer_corpus.json", encoding="utf-8"))
fuzz = [c["text"] for c in json.load(open(f"{fx}/tokenizer_goldens.json", encoding="utf-8"))["fuzz"]]
block = "\n".join(corpus + fuzz) + "\n"
text = block * (8_000_000 // len(block.encode()) + 1)
open(out, "w", encoding="utf-8").write(text)
PY

swift build -c release --package-path "$pkg" --product TokenizerBench -j "${JOBS:-1}" >/dev/null
bin="$(swift build -c release --package-path "$pkg" --show-bin-path)/TokenizerBench"
swift_json="$("$bin" "$ranks" "$text" 3)"
py_json="$(python3 "$here/bench_tiktoken.py" "$ranks" "$text" 3)"
python3 - "$swift_json" "$py_json" <<'PY'
import json, sys
s, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for r in (s, t):
    print(f"{r['impl']:>16}: {r['bytes']/r['seconds']/1e6:7.2f} MB/s  {r['tokens']/r['seconds']/1e6:6.2f} M tokens/s"
          f"  ({r['bytes']/1e6:.1f} MB -> {r['tokens']} tokens in {r['seconds']:.3f} s, vocab load {r['load_seconds']:.2f} s)")
print(f"swift / tiktoken throughput: {t['seconds']/s['seconds']:.2f}x")
if s["tokens"] != t["tokens"]:
    sys.exit(f"token counts differ: swift {s['tokens']} vs tiktoken {t['tokens']}")
PY
