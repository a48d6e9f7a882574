#!/usr/bin/env bash
# Native TunaEngine vs PyTorch CPU fp32 on the same random gpt-oss (see README.md).
# Builds EngineBench in release mode (Benchmarks/lib/native_bench.sh), then runs bench.py.
# Extra arguments go to bench.py (e.g. --threads 2 --rounds 3).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
source "$repo/Benchmarks/lib/native_bench.sh"
bin=$(tuna_native_bench EngineBench engine)
python3 "$repo/Benchmarks/engine/bench.py" --engine-bench "$bin" "$@"
