#!/usr/bin/env bash
# The main job, end to end on one machine with the embedded defaults: build, make a small
# gpt-oss-shaped checkpoint (MXFP4 experts, a 1088-token cut of o200k_harmony), start a
# coordinator (SQLite) and a local worker, submit a 2 x 2 LoRA sweep (rank 4 / 16, attention
# only / attention + the experts of layer 1) that the worker trains with the native trainer,
# watch it, then print the results table and where the adapters are.
#
# Usage: scripts/demo.sh [DEMO_DIR]   (default .demo; the model is reused across runs)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
source scripts/lib/setup.sh
tuna_require_build_tools
demo=${1:-.demo}
mkdir -p "$demo"
demo=$(cd "$demo" && pwd)

echo "== building tuna (the engine is compiled optimized even in this debug build)"
swift build --product tuna || tuna_die "the build failed (its errors are above)"
bin=$(swift build --show-bin-path)

if [ ! -s "$demo/model/model.safetensors" ]; then
    "$bin/tuna" init-model --out "$demo/model" --vocabulary Tests/TunaTextTests/Fixtures/o200k_base.tiktoken --seed 0
fi

rm -rf "$demo/data" "$demo/work" "$demo/port" "$demo/http-port" "$demo"/adapter-*
# --http: the web dashboard and /metrics, on a port of their own (docs/dashboard.md)
"$bin/tuna" coordinator --listen 127.0.0.1:0 --data-dir "$demo/data" --port-file "$demo/port" \
    --http 127.0.0.1:0 --http-port-file "$demo/http-port" 2>"$demo/coordinator.log" &
coord=$!
worker=
trap 'kill $worker $coord 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$demo/port" ] && break; sleep 0.1; done
addr="127.0.0.1:$(cat "$demo/port")"
export TUNA_COORDINATOR=$addr
# two jobs at once, one BLAS thread each (2 cores)
"$bin/tuna" worker --work-dir "$demo/work" --name local --max-jobs 2 --data-root "$repo" 2>"$demo/worker.log" &
worker=$!
# submit once the worker has registered (else `tuna submit` notes that no worker is connected)
for _ in $(seq 100); do "$bin/tuna" workers --json | grep -q '"connected" : true' && break; sleep 0.1; done
echo "== coordinator on $addr (log: $demo/coordinator.log), worker 'local' (log: $demo/worker.log)"
for _ in $(seq 100); do [ -s "$demo/http-port" ] && break; sleep 0.1; done
echo "== dashboard: http://127.0.0.1:$(cat "$demo/http-port")/ while the demo runs (log in with the token in ~/.tuna/local-$(cat "$demo/port").token)"

sed "s|@DEMO@|$demo|; s|@REPO@|$repo|" jobs/demo-native.yaml >"$demo/sweep.yaml"
"$bin/tuna" submit "$demo/sweep.yaml"

"$bin/tuna" watch

echo "== results (validation loss before training is in each job's log as the 'baseline' event)"
"$bin/tuna" results
best=$("$bin/tuna" results --sort objective --csv | sed -n 2p | cut -d, -f1)
echo "== loss curve of the best job ($best)"
"$bin/tuna" logs "$best" | grep -E "baseline|eval|done" | tail -n 5
echo "== answers of the best job ($best) before (base) and after training: the first 3 of its 8 graded questions"
"$bin/tuna" samples "$best" --limit 3
"$bin/tuna" fetch "$best" --out "$demo/adapter-$best"
echo "== adapters are stored under $demo/data/artifacts (by SHA-256); the best one (PEFT layout) was fetched to $demo/adapter-$best"
