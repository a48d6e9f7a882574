#!/usr/bin/env bash
# Native greedy generation vs transformers' generate on the CPU, same random gpt-oss, same
# prompts, same thread count (see README.md). Builds GenerateBench in release mode
# (Benchmarks/lib/native_bench.sh), then runs bench.py; extra arguments go to bench.py.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
source "$repo/Benchmarks/lib/native_bench.sh"
bin=$(tuna_native_bench GenerateBench generate)
python3 "$repo/Benchmarks/generate/bench.py" --generate-bench "$bin" "$@"
