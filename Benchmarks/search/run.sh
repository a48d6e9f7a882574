#!/usr/bin/env bash
# The search benchmark (Benchmarks/search/README.md): every method replayed on the committed
# learning-curve table (curves.csv, made by make_curves.py from real native-trainer runs), Tuna's
# (SearchBench, Swift) and Optuna's (optuna_replay.py), in one run, one table with ratios.
#
#   Benchmarks/search/run.sh [seeds=20] [workers=4]
# Needs: python3 with optuna (pip install optuna).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seeds="${1:-20}"; workers="${2:-4}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
swift build -c release --package-path "$root" --product SearchBench
bin="$(swift build -c release --package-path "$root" --show-bin-path)/SearchBench"
"$bin" --curves "$here/curves.csv" --seeds "$seeds" --workers "$workers" --json "$work/tuna.json"
echo
python3 "$here/optuna_replay.py" --curves "$here/curves.csv" --tuna-results "$work/tuna.json" --seeds "$seeds" --workers "$workers"
