#!/usr/bin/env bash
# Stops the private Slurm that scripts/slurm/start_slurm.sh started from DIR: cancels its jobs,
# stops slurmd, slurmctld and munged (each by the pid in its pid file under DIR), and kills any
# slurmstepd of this cluster that outlived them. Safe to run twice or on a half-started DIR.
#
#   scripts/slurm/stop_slurm.sh /tmp/slurm-test
set -uo pipefail

[[ $# -eq 1 && -d $1 ]] || { echo "usage: $0 DIR (a directory start_slurm.sh used)" >&2; exit 1; }
DIR=$(cd "$1" && pwd -P)
export SLURM_CONF=$DIR/etc/slurm.conf

alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }
pid_of() { [[ -f $DIR/$1 ]] && cat "$DIR/$1" 2>/dev/null; }

# stop PID NAME: SIGTERM, up to 10 s, then SIGKILL.
stop_pid() {
    local pid=$1 name=$2 _
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do alive "$pid" || return 0; sleep 0.1; done
    echo "stop_slurm: $name ($pid) ignored SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null
}

# The step daemons of this cluster: slurmstepd processes whose environment names our SLURM_CONF.
our_stepds() {
    local p
    for p in /proc/[0-9]*; do
        [[ $(cat "$p/comm" 2>/dev/null) == slurmstepd ]] || continue
        tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$SLURM_CONF" && echo "${p#/proc/}"
    done
}

# PID and all its descendants (by parent pid), children first.
tree() {
    local c
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do tree "$c"; done
    echo "$1"
}

ctld=$(pid_of run/slurmctld.pid)
if alive "$ctld" && [[ -f $SLURM_CONF ]]; then
    # Cancel every job so that job steps get their SIGTERM/KillWait like a normal end.
    scancel --user="$(id -un)" 2>/dev/null
    for _ in $(seq 40); do
        [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
        sleep 0.5
    done
fi

stop_pid "$(pid_of run/slurmd.pid)" slurmd
stop_pid "$ctld" slurmctld
# Normally none are left (their jobs were cancelled above); if slurmctld was already gone,
# kill what is left of the jobs: each slurmstepd and the processes under it.
for stepd in $(our_stepds); do
    echo "stop_slurm: killing slurmstepd $stepd and its processes" >&2
    for pid in $(tree "$stepd"); do kill -KILL "$pid" 2>/dev/null; done
done
munged_pid=$(pid_of munge/munged.pid)
stop_pid "$munged_pid" munged
echo "stop_slurm: stopped the Slurm of $DIR" >&2
exit 0
