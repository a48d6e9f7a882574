#!/usr/bin/env bash
# The dashboard benchmark (Benchmarks/dashboard/README.md): a 10,000-job sweep with 200 evals per
# job, Tuna's sweep page and data endpoints and the page in headless chromium, against
# optuna-dashboard on the same study, in one run, one table with ratios.
#
#   Benchmarks/dashboard/run.sh [runs=10]
# Needs: chromium (apt-get install -y chromium); python3 with websocket-client, optuna and
# optuna-dashboard (pip install websocket-client optuna optuna-dashboard).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
swift build -c release --package-path "$root" --product tuna
bin="$(swift build -c release --package-path "$root" --show-bin-path)"
python3 "$here/bench.py" --tuna "$bin/tuna" --runs "${1:-10}"
