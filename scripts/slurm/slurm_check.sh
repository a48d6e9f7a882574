#!/usr/bin/env bash
# End-to-end check of Tuna workers run by a real Slurm (deploy/slurm/tuna-worker.sbatch):
#
#   scripts/slurm/slurm_check.sh --tuna .build/debug/tuna --toy .build/debug/ToyTrainer [--keep]
#
# Starts a private single-node Slurm (start_slurm.sh; needs root, slurm-wlm and munge) and a
# coordinator, submits a 4-job ToyTrainer sweep (24 steps of 1 s each), sbatches two workers A
# and B, and once a job runs on A at step >= 6, `scancel`s A's allocation. Then it checks that
# A's worker hands the job back (attempt state `returned`, not a failure) and exits before
# Slurm's KillWait, sbatches a replacement worker C, and checks that the job resumes from its
# checkpoint on another worker and succeeds, that every job succeeded exactly once, and that
# B and C end their Slurm jobs by themselves (--exit-when-idle) with exit code 0.
# Prints ok:/FAIL: lines and `N passed, M failed`; exits 1 on any failure. Takes about 75 s.
# The scratch directory is removed on success, kept on failure or with --keep.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SBATCH_SCRIPT=$REPO/deploy/slurm/tuna-worker.sbatch

TUNA="" TOY="" KEEP=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --tuna) TUNA=${2:-}; shift 2 ;;
        --toy) TOY=${2:-}; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) echo "usage: $0 --tuna PATH_TO_TUNA --toy PATH_TO_TOYTRAINER [--keep]" >&2; exit 2 ;;
    esac
done
[[ -x $TUNA && -x $TOY ]] || { echo "usage: $0 --tuna PATH_TO_TUNA --toy PATH_TO_TOYTRAINER [--keep] (both executable)" >&2; exit 2; }
TUNA=$(realpath "$TUNA") TOY=$(realpath "$TOY")
command -v python3 >/dev/null || { echo "FAIL: python3 is needed to read tuna's JSON"; echo "0 passed, 1 failed"; exit 1; }

STEPS=24 STEP_MS=1000 CKPT_EVERY=4 IDLE_EXIT=5 KILL_WAIT=30
NODE=$(hostname -s)
WORK=$(mktemp -d /tmp/tuna-slurm-check.XXXXXX)
unset TUNA_TOKEN TUNA_COORDINATOR   # the workers must get theirs through sbatch --export
T0=$SECONDS
passed=0 failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; failed=$((failed + 1)); }
note() { printf '  [%3ds] %s\n' $((SECONDS - T0)) "$*"; }
# expect CONDITION_EXIT_STATUS MESSAGE
expect() { if [[ $1 -eq 0 ]]; then ok "$2"; else bad "$2"; fi; }

COORD_PID="" SLURM_UP=0 JOBS_SUBMITTED=()
cleanup() {
    local rc=$?
    set +e
    if ((SLURM_UP)); then
        ((${#JOBS_SUBMITTED[@]})) && scancel "${JOBS_SUBMITTED[@]}" 2>/dev/null
        "$HERE/stop_slurm.sh" "$WORK/slurm" 2>/dev/null
    fi
    if [[ -n $COORD_PID ]] && kill -0 "$COORD_PID" 2>/dev/null; then
        kill -TERM "$COORD_PID"
        for _ in $(seq 50); do kill -0 "$COORD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$COORD_PID" 2>/dev/null
    fi
    # Anything of this run that outlived Slurm (a worker or trainer whose slurmstepd was
    # killed): processes whose command line or working directory lies under $WORK.
    local p
    for p in /proc/[0-9]*; do
        [[ ${p#/proc/} == "$$" ]] && continue
        if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF "$WORK/" || [[ $(readlink "$p/cwd" 2>/dev/null) == "$WORK"/* ]]; then
            kill -KILL "${p#/proc/}" 2>/dev/null && echo "  (killed leftover process ${p#/proc/})"
        fi
    done
    if ((failed == 0 && KEEP == 0 && rc == 0)); then rm -rf "$WORK"; else echo "  scratch directory kept: $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

finish() {
    echo "$passed passed, $failed failed"
    ((failed == 0)) && exit 0 || exit 1
}
fatal() { bad "$*"; finish; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.5 s until it succeeds.
wait_for() {
    local limit=$1 what=$2; shift 2
    local deadline=$((SECONDS + limit))
    while ((SECONDS < deadline)); do
        "$@" && return 0
        sleep 0.5
    done
    note "timed out after ${limit}s waiting for: $what"
    return 1
}

tuna() { timeout 30 "$TUNA" "$@" --coordinator "$ADDR" --token-file "$WORK/token"; }
# json EXPR: evaluates the Python expression EXPR on the JSON read from stdin (bound to `d`)
# and prints the result (lists one item a line).
json() {
    python3 -c '
import json, sys
d = json.load(sys.stdin)
r = eval(sys.argv[1])
print("\n".join(map(str, r)) if isinstance(r, list) else r)' "$1"
}
in_queue() { squeue -h -o %i 2>/dev/null | grep -qx "$1"; }
slurm_state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
slurm_exit() { scontrol show job "$1" 2>/dev/null | grep -o ' ExitCode=[0-9:]*' | cut -d= -f2; }
worker_name() { echo "slurm-$1-$NODE"; }
submit_worker() {
    local id
    id=$(sbatch --parsable --chdir="$WORK" --output="$WORK/worker-%j.out" \
        --export="ALL,TUNA_BIN=$TUNA,TUNA_COORDINATOR=$ADDR,TUNA_TOKEN_FILE=$WORK/token,TUNA_WORK_ROOT=$WORK/workers,TUNA_IDLE_EXIT=$IDLE_EXIT" \
        "$SBATCH_SCRIPT") || return 1
    id=${id%%;*}
    JOBS_SUBMITTED+=("$id")
    echo "$id"
}

echo "slurm_check: tuna=$TUNA toy=$TOY scratch=$WORK"

# ---- preflight -----------------------------------------------------------------------------
bash -n "$SBATCH_SCRIPT" || fatal "$SBATCH_SCRIPT does not parse"
"$TUNA" worker --help 2>&1 | grep -q -- --exit-when-idle ||
    fatal "$TUNA worker has no --exit-when-idle (the sbatch script passes it); rebuild tuna"

# ---- Slurm -----------------------------------------------------------------------------------
SLURM_UP=1
if ! env_line=$(SLURM_KILL_WAIT=$KILL_WAIT "$HERE/start_slurm.sh" "$WORK/slurm" 2>"$WORK/start_slurm.log"); then
    cat "$WORK/start_slurm.log"
    fatal "private Slurm did not start (log above)"
fi
eval "$env_line"
export SLURM_CONF
cpus=$(sinfo -h -N -o %c | head -n1)
((cpus >= 2)) || fatal "the Slurm node has $cpus CPU(s); two workers at once need 2"
ok "private Slurm up (node $NODE idle, $cpus CPUs, KillWait ${KILL_WAIT}s)"

# ---- coordinator and sweep -----------------------------------------------------------------
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/token"
"$TUNA" coordinator --listen 127.0.0.1:0 --data-dir "$WORK/coord" --port-file "$WORK/port" \
    --token-file "$WORK/token" >"$WORK/coordinator.log" 2>&1 &
COORD_PID=$!
wait_for 30 "coordinator port file" test -s "$WORK/port" || { tail "$WORK/coordinator.log"; fatal "coordinator did not start"; }
ADDR=127.0.0.1:$(tr -d '[:space:]' <"$WORK/port")

cat >"$WORK/sweep.yaml" <<EOF
name: slurm-check
trainer: command
command: ["$TOY"]
i: [1, 2, 3, 4]
steps: $STEPS
step_ms: $STEP_MS
checkpoint_every: $CKPT_EVERY
EOF
submitted=$(tuna submit "$WORK/sweep.yaml" --json) || fatal "tuna submit failed: $submitted"
SWEEP=$(json 'd["sweep"]' <<<"$submitted")
njobs=$(json 'd["jobs"]' <<<"$submitted")
[[ $njobs == 4 ]] || fatal "expected a 4-job sweep, got: $submitted"
note "coordinator on $ADDR, sweep $SWEEP of 4 jobs ($STEPS steps x ${STEP_MS} ms)"

# ---- two workers; cancel A mid-job --------------------------------------------------------
A=$(submit_worker) || fatal "sbatch of worker A failed"
B=$(submit_worker) || fatal "sbatch of worker B failed"
NAME_A=$(worker_name "$A")
note "sbatched worker A = Slurm job $A, worker B = Slurm job $B"

# The job A runs, once it has made some progress (so that it has a checkpoint to resume from).
job_on_a() {
    local rows
    rows=$(tuna jobs --sweep "$SWEEP" --json 2>/dev/null) || return 1
    X=$(json "[r['id'] for r in d if r['status'] == 'running' and r.get('worker') == '$NAME_A'][:1]" <<<"$rows")
    [[ -n $X ]] || return 1
    S0=$(tuna logs "$X" --json 2>/dev/null | json "max([e['event'].get('step', 0) for e in d if e['event'].get('event') == 'step'] or [0])")
    [[ ${S0:-0} -ge 6 ]]
}
X="" S0=0
if wait_for 60 "a job running on worker A at step >= 6" job_on_a; then
    ok "job $X runs on worker A ($NAME_A), at step $S0 of $STEPS"
else
    for id in "$A" "$B"; do echo "  --- worker-$id.out:"; tail -n 20 "$WORK/worker-$id.out" 2>/dev/null; done
    fatal "no job reached step 6 on worker A"
fi

scancel "$A"
t_cancel=$SECONDS
note "scancel $A"
if wait_for $((KILL_WAIT + 20)) "Slurm job $A to end" bash -c "! squeue -h -o %i | grep -qx $A"; then
    took=$((SECONDS - t_cancel))
    ((took < KILL_WAIT)); expect $? "worker A's allocation ended ${took}s after scancel, before KillWait (${KILL_WAIT}s): the worker exited, not killed"
else
    bad "worker A's Slurm job $A still in squeue $((KILL_WAIT + 20))s after scancel"
fi
grep -q "returned to the queue" "$WORK/worker-$A.out"; expect $? "worker A's log says it returned job $X to the queue"

attempt_state() {  # JOB ATTEMPT -> state of that attempt
    tuna jobs "$1" --json | json "[a['state'] for a in d['attempts'] if a['attempt'] == $2][:1]"
}
st=$(attempt_state "$X" 1)
[[ $st == returned ]]; expect $? "job $X attempt 1 (worker A) ended as 'returned' (a return), got '${st:-none}'"

# ---- a replacement worker; everything finishes ---------------------------------------------
C=$(submit_worker) || fatal "sbatch of worker C failed"
note "sbatched replacement worker C = Slurm job $C"

all_done() {
    local rows
    rows=$(tuna results --sweep "$SWEEP" --json 2>/dev/null) || return 1
    [[ $(json "sum(r['status'] in ('succeeded', 'failed', 'cancelled') for r in d)" <<<"$rows") == 4 ]]
}
wait_for 120 "all 4 jobs to end" all_done || true
note "jobs ended"

results=$(tuna results --sweep "$SWEEP" --json)
n_ok=$(json "sum(r['status'] == 'succeeded' for r in d)" <<<"$results")
[[ $n_ok == 4 ]]; expect $? "all 4 jobs succeeded (got $n_ok: $(json "' '.join(str(r['id']) + '=' + r['status'] for r in d)" <<<"$results"))"

bad_attempts=""
for j in $(json "[r['id'] for r in d]" <<<"$results"); do
    detail=$(tuna jobs "$j" --json)
    s=$(json "sum(a['state'] == 'succeeded' for a in d['attempts'])" <<<"$detail")
    states=$(json "' '.join(a['state'] for a in d['attempts'])" <<<"$detail")
    [[ $s == 1 ]] || bad_attempts+=" job $j: $s successful attempts;"
    if [[ $j == "$X" ]]; then
        [[ $states == "returned succeeded" ]]; expect $? "job $X's attempts: 'returned succeeded' (got '$states')"
        fin=$(json "[a['worker'] for a in d['attempts'] if a['state'] == 'succeeded'][:1]" <<<"$detail")
        case $fin in
            "$(worker_name "$B")") ok "job $X finished on the other worker B ($fin)" ;;
            "$(worker_name "$C")") ok "job $X finished on the replacement worker C ($fin)" ;;
            *) bad "job $X finished on '$fin', neither B ($(worker_name "$B")) nor C ($(worker_name "$C"))" ;;
        esac
    else
        [[ $states == succeeded ]] || bad_attempts+=" job $j: attempts '$states';"
    fi
done
[[ -z $bad_attempts ]]; expect $? "every job succeeded exactly once, the others in one attempt${bad_attempts:+:$bad_attempts}"

# Resumed from the checkpoint A's trainer wrote on SIGTERM: the toy trainer reports
# {"event": "resumed", "step": N} and continues at step N+1.
logs=$(tuna logs "$X" --all --json)
resumed=$(json "[e['event']['step'] for e in d if e['event'].get('event') == 'resumed'][:1]" <<<"$logs")
first=$(json "[e['event']['step'] for e in d if e['event'].get('event') == 'step'][:1]" <<<"$logs")
if [[ -n $resumed ]] && ((resumed >= S0 && resumed < STEPS)) && [[ $first == $((resumed + 1)) ]]; then
    ok "job $X resumed from its checkpoint at step $resumed (A had reached $S0) and went on at step $first"
else
    bad "job $X did not resume as expected: resumed='${resumed:-none}', first step '${first:-none}', A had reached step $S0"
fi

# ---- the remaining workers leave by themselves --------------------------------------------
queue_empty() { [[ -z $(squeue -h -o %i) ]]; }
if wait_for $((IDLE_EXIT + 30)) "squeue to empty (--exit-when-idle $IDLE_EXIT)" queue_empty; then
    ok "squeue empty $((SECONDS - T0))s in: workers B and C exited by themselves after ${IDLE_EXIT}s idle"
else
    bad "workers still queued/running $((IDLE_EXIT + 30))s after the jobs ended: $(squeue -h -o '%i %T' | tr '\n' ' ')"
fi
for id in "$B" "$C"; do
    s=$(slurm_state "$id") e=$(slurm_exit "$id")
    [[ $s == COMPLETED && $e == 0:0 ]]; expect $? "Slurm job $id: state ${s:-?}, exit code ${e:-?} (want COMPLETED, 0:0)"
done
note "A's Slurm job $A ended $(slurm_state "$A") $(slurm_exit "$A")"
if ((failed)); then
    for id in "${JOBS_SUBMITTED[@]}"; do echo "  --- worker-$id.out (tail):"; tail -n 12 "$WORK/worker-$id.out" 2>/dev/null | sed 's/^/    /'; done
fi
finish
