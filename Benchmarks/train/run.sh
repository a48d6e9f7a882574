#!/usr/bin/env bash
# Native TunaEngine LoRA training vs PyTorch CPU (transformers + PEFT) on the same random gpt-oss
# (see README.md). Builds TrainBench in release mode (Benchmarks/lib/native_bench.sh), then runs
# bench.py. Extra arguments go to bench.py (e.g. --threads 2 --steps 3).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
source "$repo/Benchmarks/lib/native_bench.sh"
bin=$(tuna_native_bench TrainBench train)
python3 "$repo/Benchmarks/train/bench.py" --train-bench "$bin" "$@"
