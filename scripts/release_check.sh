#!/usr/bin/env bash
# The release tarball on a box with no Swift toolchain: unpacks it, checks that the binary
# needs nothing outside the tarball but glibc (every other library resolves into its lib/,
# no Swift runtime library at all), lays it out with install.sh --root, verifies the systemd
# units with systemd-analyze, then runs a coordinator, a worker and a small native sweep
# from it with PATH and LD_LIBRARY_PATH cleared of any toolchain.
#
# Usage: scripts/release_check.sh dist/tuna-VERSION-linux-x86_64.tar.gz
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
tarball=$(readlink -f "${1:?usage: scripts/release_check.sh TARBALL}")
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
passed=0 failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

(cd "$(dirname "$tarball")" && sha256sum --quiet -c "$(basename "$tarball").sha256") \
    && ok "tarball matches its .sha256" || bad "tarball does not match its .sha256"
tar -C "$work" -xzf "$tarball"
top=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'tuna-*')
tuna=$top/bin/tuna

# A box without the toolchain: only the system's own directories on PATH, no LD_LIBRARY_PATH.
clean=(env -i HOME="$work" PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
check "no swift on the cleared PATH" bash -c '! "$@" bash -c "command -v swift" >/dev/null' _ "${clean[@]}"

deps=$("${clean[@]}" ldd "$tuna")
check "every library resolves (ldd: no 'not found')" bash -c '! grep -q "not found" <<<"$1"' _ "$deps"
check "no Swift runtime library is loaded (the Swift stdlib and Foundation are linked in)" bash -c '! grep -qi swift <<<"$1"' _ "$deps"
for lib in libopenblas.so.0 libsqlite3.so.0 libgfortran.so.5; do
    where=$(awk -v l="$lib" '$1 == l { print $3 }' <<<"$deps")
    check "$lib comes from the tarball's lib/ ($where)" test "$(readlink -f "$where")" = "$(readlink -f "$top/lib/$lib")"
done
version=$("${clean[@]}" "$tuna" version)
echo "   $version"
check "tuna version names the release, protocol and build commit" grep -Eq '^tuna [0-9.]+ \(protocol [0-9]+; build: commit [0-9a-f]{12}' <<<"$version"

# install.sh into a scratch root; then the units it installed, through systemd-analyze.
"${clean[@]}" "$top/install.sh" --root "$work/root" >"$work/install.log" 2>&1 || { cat "$work/install.log"; bad "install.sh --root"; }
check "install.sh laid out /opt/tuna/current, /usr/local/bin/tuna, the units and a token" \
    test -x "$work/root/opt/tuna/current/bin/tuna" -a -L "$work/root/usr/local/bin/tuna" -a -s "$work/root/etc/tuna/token" \
         -a -f "$work/root/etc/systemd/system/tuna-worker.service" -a -x "$work/root/opt/tuna/current/worker/tuna-torch"
check "the installed tuna runs from /opt/tuna/current" "${clean[@]}" "$work/root/opt/tuna/current/bin/tuna" version
# The torch trainer reads the published job spec strictly; from an install it must find it
# (spec.py: worker/tuna_torch/../../contract). Standard-library Python only, no torch needed.
if command -v python3 >/dev/null; then
    check "the installed torch trainer reads the release's contract/ (a validated job file)" "${clean[@]}" \
        env PYTHONPATH="$work/root/opt/tuna/current/worker" python3 -c \
        'import sys; from tuna_torch import spec; j = spec.load(sys.argv[1]); assert j.attempt == 2 and j.torch.experts == "auto"' \
        "$work/root/opt/tuna/current/contract/job-file.json"
fi
if command -v systemd-analyze >/dev/null; then
    mkdir -p "$work/units"
    for u in "$work"/root/etc/systemd/system/*.service; do
        # the same unit, with its binary where this scratch root has it
        sed "s|/usr/local/bin/tuna|$work/root/opt/tuna/current/bin/tuna|" "$u" >"$work/units/$(basename "$u")"
    done
    report=$(systemd-analyze verify "$work"/units/*.service 2>&1) && [ -z "$report" ] \
        && ok "systemd-analyze verify: the units are clean" || bad "systemd-analyze verify: $report"
else
    echo "skip: systemd-analyze is not installed (apt-get install systemd)"
fi

# A coordinator, a worker and a 2-job native sweep, all from the tarball.
model=$work/model
"${clean[@]}" "$tuna" init-model --out "$model" --vocabulary "$repo/Tests/TunaTextTests/Fixtures/o200k_base.tiktoken" --seed 0 >"$work/init.log" 2>&1 \
    && ok "tuna init-model" || { cat "$work/init.log"; bad "tuna init-model"; }
"${clean[@]}" "$tuna" coordinator --listen 127.0.0.1:0 --data-dir "$work/data" --port-file "$work/port" 2>"$work/coordinator.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
addr=127.0.0.1:$(cat "$work/port")
"${clean[@]}" "$tuna" worker --coordinator "$addr" --work-dir "$work/work" --name release --max-jobs 2 --exit-when-idle 3 2>"$work/worker.log" &
worker=$!
pids+=($worker)
for _ in $(seq 100); do "${clean[@]}" "$tuna" workers --coordinator "$addr" --json | grep -q '"connected" : true' && break; sleep 0.1; done
sed -e "s|@DEMO@|$work|; s|@REPO@|$repo|" -e 's/rank: \[4, 16\]/rank: 4/; s/epochs: 2/epochs: 1/' "$repo/jobs/demo-native.yaml" >"$work/sweep.yaml"
"${clean[@]}" "$tuna" submit --coordinator "$addr" "$work/sweep.yaml"
"${clean[@]}" "$tuna" watch --coordinator "$addr" --interval 0.5 >/dev/null
results=$("${clean[@]}" "$tuna" results --coordinator "$addr" --csv)
echo "$results"
check "the sweep's 2 jobs succeeded" test "$(grep -c ',succeeded,' <<<"$results")" -eq 2
# the native trainer ran as a child of the tarball's own tuna (`tuna train`)
check "the worker ran its jobs with the tarball's binary" grep -q "$top/bin/tuna" <<<"$("${clean[@]}" "$tuna" logs --coordinator "$addr" 1 --all --json)"
for _ in $(seq 100); do kill -0 "$worker" 2>/dev/null || break; sleep 0.1; done
check "the worker left by itself once idle (--exit-when-idle 3)" bash -c '! kill -0 "$1" 2>/dev/null' _ "$worker"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
