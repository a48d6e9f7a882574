#!/usr/bin/env bash
# The main job, end to end on one machine: build, start a coordinator and a local worker,
# submit a small sweep, show progress, print the results table and where the adapters are.
#
# Today the sweep runs through the `command` trainer with the toy trainer that ships in this
# repo (Sources/ToyTrainer); it becomes the native gpt-oss LoRA demo once the native trainer
# lands (issue 4). Usage: scripts/demo.sh [DEMO_DIR] (default .demo, reused across runs).
set -euo pipefail
cd "$(dirname "$0")/.."
demo=${1:-.demo}
mkdir -p "$demo"
demo=$(cd "$demo" && pwd)

echo "== building (debug)"
swift build --product tuna >/dev/null
swift build --product ToyTrainer >/dev/null
bin=$(swift build --show-bin-path)

rm -rf "$demo/data" "$demo/work" "$demo/port"
"$bin/tuna" coordinator --listen 127.0.0.1:0 --data-dir "$demo/data" --port-file "$demo/port" 2>"$demo/coordinator.log" &
coord=$!
trap 'kill $worker $coord 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$demo/port" ] && break; sleep 0.1; done
addr="127.0.0.1:$(cat "$demo/port")"
export TUNA_COORDINATOR=$addr
"$bin/tuna" worker --work-dir "$demo/work" --name local --max-jobs 2 2>"$demo/worker.log" &
worker=$!
echo "== coordinator on $addr (log: $demo/coordinator.log), worker 'local' (log: $demo/worker.log)"

sed "s|@TOY_TRAINER@|$bin/ToyTrainer|" jobs/demo-toy.yaml >"$demo/sweep.yaml"
"$bin/tuna" submit "$demo/sweep.yaml"

"$bin/tuna" watch

echo "== results"
"$bin/tuna" results --sort best_val_loss
best=$("$bin/tuna" results --sort best_val_loss --csv | sed -n 2p | cut -d, -f1)
echo "== loss curve of the best job ($best)"
"$bin/tuna" logs "$best" | tail -n 6
"$bin/tuna" fetch "$best" --out "$demo/adapter-$best"
echo "== adapters are stored under $demo/data/artifacts (by SHA-256); the best one was fetched to $demo/adapter-$best"
