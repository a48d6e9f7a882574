#!/usr/bin/env bash
# Installs this Tuna release on a box (run from the unpacked tarball, as root):
#   ./install.sh                 tuna in /opt/tuna/VERSION (/opt/tuna/current links to it),
#                                /usr/local/bin/tuna, the systemd units, user `tuna`,
#                                /etc/tuna with a random token (kept if one is there)
#   ./install.sh --torch         also the torch trainer's Python environment
#                                (/opt/tuna/VERSION/worker/.venv, from worker/requirements.txt)
#   ./install.sh --root DIR      lay everything out under DIR instead of / (no user is created,
#                                nothing is started; for packaging and tests)
# Then on the coordinator's box `systemctl enable --now tuna-coordinator`, on each GPU box put
# TUNA_COORDINATOR=HOST:7070 in /etc/tuna/worker.env, copy the coordinator's /etc/tuna/token
# there, and `systemctl enable --now tuna-worker` (share/tuna/deploy.md says it step by step).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=
torch=0
while [ $# -gt 0 ]; do
    case $1 in
        --root) root=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
        --torch) torch=1; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$root" ] || [ "$(id -u)" -eq 0 ] || { echo "error: run as root (or with --root DIR)" >&2; exit 1; }

version=$("$here/bin/tuna" version --json | sed -n 's/.*"tuna" *: *"\([^"]*\)".*/\1/p')
[ -n "$version" ] || { echo "error: $here/bin/tuna does not run on this box: $("$here/bin/tuna" version 2>&1 | head -n1)" >&2; exit 1; }
dest=$root/opt/tuna/$version
echo "== installing tuna $version in $dest"
mkdir -p "$dest" "$root/usr/local/bin" "$root/etc/systemd/system" "$root/etc/tuna" "$root/srv/tuna"
cp -r "$here/bin" "$here/lib" "$here/share" "$here/worker" "$here/contract" "$here/deploy" "$here/jobs" "$dest/"
ln -sfn "$version" "$root/opt/tuna/current"
ln -sfn /opt/tuna/current/bin/tuna "$root/usr/local/bin/tuna"
cp "$here"/deploy/*.service "$root/etc/systemd/system/"

if [ -z "$root" ]; then
    getent group tuna >/dev/null || groupadd --system tuna
    getent passwd tuna >/dev/null || useradd --system --gid tuna --home-dir /var/lib/tuna --shell /usr/sbin/nologin tuna
    chown tuna:tuna /srv/tuna
fi
if [ ! -s "$root/etc/tuna/token" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$root/etc/tuna/token")
    echo "== made a token in $root/etc/tuna/token: copy it to every worker's /etc/tuna/token and to the CLI's machines (TUNA_TOKEN or --token-file)"
fi
if [ -z "$root" ]; then
    chown root:tuna /etc/tuna/token
    chmod 0640 /etc/tuna/token
fi

if [ "$torch" -eq 1 ]; then
    echo "== the torch trainer's Python environment ($dest/worker/.venv)"
    python3 -m venv "$dest/worker/.venv"
    "$dest/worker/.venv/bin/python3" -m pip install -r "$dest/worker/requirements.txt"
fi
if [ -z "$root" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
echo "== done: $("$dest/bin/tuna" version)"
