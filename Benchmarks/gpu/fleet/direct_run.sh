#!/usr/bin/env bash
# The control for fleet_e2e.sh's overhead figure: the same LoRA job (fleet/lora.yaml, index
# $1, default 0: r=64 q,k,v,o) run by the torch trainer directly, without coordinator or worker,
# from the same tarball on the same checkpoint and chats. Its step events (stdout) go to
# $OUT/direct-INDEX.jsonl; compare their throughput with the worker's (fleet/check.py's
# window: steps 6..100).
#   Benchmarks/gpu/fleet/direct_run.sh [INDEX] [TARBALL]
set -euo pipefail
cd "$(dirname "$0")/../../.."
index=${1:-0}
S=${TUNA_FLEET_STATE:-/tmp/tuna-fleet}
out=${OUT:-$S/out}
mkdir -p "$out" "$S/direct"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
# a fresh machine: unpack, checkpoint and chats again (same seeds); a warm one reuses them
Benchmarks/gpu/fleet/inputs.sh "$S" "${2:-}"
tuna=$S/tuna/bin/tuna
sed "s|@CKPT@|$S/ckpt|; s|@DATA@|$S/data|" Benchmarks/gpu/fleet/lora.yaml >"$S/direct/lora.yaml"
# the job exactly as the coordinator would lease it (the validated spec of that index)
"$tuna" submit --dry-run --json "$S/direct/lora.yaml" \
    | python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin)[$index]['params']))" >"$S/direct/job-$index.json"
rm -rf "$S/direct/work-$index" "$S/direct/out-$index"
mkdir -p "$S/direct/work-$index"
SECONDS=0
CUDA_VISIBLE_DEVICES=0 "$S/tuna/worker/tuna-torch" --tuna "$tuna" --root "$S" --work-dir "$S/direct/work-$index" \
    "$S/direct/job-$index.json" --out "$S/direct/out-$index" >"$out/direct-$index.jsonl"
echo "direct run of index $index: $SECONDS s"
python3 - "$out/direct-$index.jsonl" <<'PY'
import json, sys
sys.path.insert(0, "Benchmarks/gpu/fleet")
from check import ROW_POSITIONS, trainer_window
ev = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
steps = [e for e in ev if e.get("event") == "step"]
window, tokens, seconds = trainer_window(steps)
print(json.dumps({"steps": len(steps), "window_steps": len(window), "tokens_per_s_trainer": tokens / seconds,
                  "positions_per_s": len(window) * ROW_POSITIONS / seconds,
                  "final_val_loss": [e for e in ev if e.get("event") == "eval"][-1]["loss"]}))
PY
