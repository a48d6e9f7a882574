#!/usr/bin/env bash
# Tuna as a fleet on one GPU box, from the release tarball alone (issue 11): a coordinator and
# `tuna worker --torch-trainer` started from the unpacked tarball, the random gpt-oss-20b-shaped
# MXFP4 checkpoint of bench_lora.py (plus the real o200k vocabulary, which the native tokenizer
# loads), harmony chats of varied lengths (fleet/make_chats.py), and with `tuna submit`:
#   fleet/lora.yaml   two LoRA jobs, r=64 q,k,v,o and r=8 all-linear + experts of layers 7/15/23,
#                     100 optimizer steps each at 4 x 2048 (packed chats);
#   fleet/prune.yaml  one `task: prune` job (keep 20 of 32, also 24 and 16, REAP).
# Then the results as the coordinator stored them, the adapters fetched with `tuna fetch`, the
# benchmark's figures for the same recipes in the same run (bench_lora.py, fast path only), and
# fleet/check.py's verdict (worker overhead, PeftModel.from_pretrained on the adapters).
#
#   Benchmarks/gpu/fleet_e2e.sh start  dist/tuna-*.tar.gz   # set up, submit, wait (<= ~9 min)
#   Benchmarks/gpu/fleet_e2e.sh finish dist/tuna-*.tar.gz   # wait for the end, fetch, bench, check
#
# Two phases because one `device` call is at most 10 minutes: the coordinator and the worker are
# started with setsid, so they keep running between the two calls while the machine is warm.
# State in $TUNA_FLEET_STATE (default /tmp/tuna-fleet); logs and results to $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
phase=${1:?usage: fleet_e2e.sh start|finish TARBALL}
S=${TUNA_FLEET_STATE:-/tmp/tuna-fleet}
out=${OUT:-$S/out}
mkdir -p "$out"
export TUNA_COORDINATOR=127.0.0.1:7070 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
tuna=$S/tuna/bin/tuna
T0=$(date +%s)
log() { echo "[$(date -u +%T) +$(($(date +%s) - T0))s] $*"; }

# Waits until no job is queued or running, at most $1 seconds; `tuna jobs` every minute.
wait_done() {
    local deadline=$(($(date +%s) + $1)) last=0
    while [ "$(date +%s)" -lt "$deadline" ]; do
        local open
        open=$("$tuna" sweeps --json | python3 -c 'import json,sys; print(sum(s["queued"] + s["running"] for s in json.load(sys.stdin)))')
        [ "$open" -eq 0 ] && { log "every job has ended"; return 0; }
        if [ $(($(date +%s) - last)) -ge 60 ]; then "$tuna" jobs; last=$(date +%s); fi
        sleep 5
    done
    log "jobs still open after $1 s"
    return 1
}

case $phase in
start)
    tarball=$(readlink -f "${2:?the release tarball}")
    rm -rf "$S"
    log "unpacking $(basename "$tarball"), writing the random gpt-oss-20b-shaped MXFP4 checkpoint, the chats"
    Benchmarks/gpu/fleet/inputs.sh "$S" "$tarball"
    log "$("$tuna" version)"
    nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv
    setsid nohup "$tuna" coordinator --listen 127.0.0.1:7070 --data-dir "$S/coordinator" >"$S/coordinator.log" 2>&1 </dev/null &
    for _ in $(seq 50); do "$tuna" sweeps >/dev/null 2>&1 && break; sleep 0.2; done
    setsid nohup "$tuna" worker --work-dir "$S/work" --name h200 --torch-trainer "$S/tuna/worker/tuna-torch" --data-root "$S" \
        >"$S/worker.log" 2>&1 </dev/null &
    for _ in $(seq 100); do "$tuna" workers --json | grep -q '"connected" : true' && break; sleep 0.2; done
    "$tuna" workers
    for spec in lora prune; do
        sed "s|@CKPT@|$S/ckpt|; s|@DATA@|$S/data|" "Benchmarks/gpu/fleet/$spec.yaml" >"$S/$spec.yaml"
        "$tuna" submit "$S/$spec.yaml"
    done
    wait_done 480 || true
    "$tuna" jobs
    ;;
finish)
    wait_done 420
    "$tuna" results
    "$tuna" results --json >"$S/results.json"
    "$tuna" workers --json >"$S/workers.json"
    "$tuna" workers
    for job in $(python3 -c 'import json,sys; print(" ".join(str(r["id"]) for r in json.load(open(sys.argv[1]))))' "$S/results.json"); do
        "$tuna" jobs "$job"
        "$tuna" logs "$job" --json >"$S/logs-$job.json"
        "$tuna" logs "$job" | grep -E "baseline|eval|done" | tail -n 4 || true
        # the adapters (the prune job's 9.9 GB checkpoint stays on the coordinator; `tuna jobs` lists it)
        if python3 -c 'import json,sys; r=[r for r in json.load(open(sys.argv[1])) if r["id"]==int(sys.argv[2])][0]; sys.exit(0 if r["params"].get("lora") else 1)' "$S/results.json" "$job"; then
            "$tuna" fetch "$job" --out "$S/adapters/$job"
        fi
    done
    pkill -f "$S/tuna/bin/tuna worker" || true
    pkill -f "$S/tuna/bin/tuna coordinator" || true
    log "the benchmark's fast path (d, d-experts) on the same checkpoint, in this run"
    python3 Benchmarks/gpu/bench_lora.py --ckpt "$S/ckpt" --reuse-ckpt --keep-ckpt --plain "" --long-seq 0 --out "$S/bench"
    log "verdict"
    set +e
    python3 Benchmarks/gpu/fleet/check.py --state "$S" --bench "$S/bench/results.json" --out "$S/verdict"
    rc=$?
    set -e
    cp "$S/verdict/fleet.json" "$out/fleet.json"
    cp "$S/bench/results.json" "$out/bench_lora.json"
    cp "$S/results.json" "$out/results.json"
    tail -n 300 "$S/worker.log" >"$out/worker.log"
    tail -n 100 "$S/coordinator.log" >"$out/coordinator.log"
    exit $rc
    ;;
*) echo "usage: fleet_e2e.sh start|finish TARBALL" >&2; exit 2 ;;
esac
