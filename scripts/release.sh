#!/usr/bin/env bash
# One download per box: builds dist/tuna-VERSION-linux-x86_64.tar.gz, which runs on a Linux
# x86-64 box with glibc 2.36 or newer and nothing else installed (no Swift toolchain):
#   bin/tuna            release build, the Swift runtime and Foundation linked in (--static-swift-stdlib)
#   lib/                the shared libraries tuna needs beyond glibc (OpenBLAS and its Fortran
#                       runtime, SQLite, libstdc++), found through an RPATH of $ORIGIN/../lib
#   worker/             the torch trainer (tuna_torch, its launcher tuna-torch, pinned requirements.txt)
#   deploy/             systemd units, the Slurm batch script
#   jobs/               example sweep specs
#   install.sh          puts it all in place (see its header)
#   share/tuna/BUILD    commit, date and toolchain of this build (`tuna version` prints it)
#
# Usage: scripts/release.sh [--out DIR]   (default dist/)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
source scripts/lib/setup.sh

out=$repo/dist
while [ $# -gt 0 ]; do
    case $1 in
        --out) out=$2; shift 2 ;;
        *) tuna_die "usage: scripts/release.sh [--out DIR]" ;;
    esac
done
[ "$(uname -m)" = x86_64 ] || tuna_die "releases are built for x86_64; this machine is $(uname -m)"
tuna_require_build_tools

echo "== building tuna (release, Swift runtime linked in)"
# --disable-new-dtags: an RPATH (not RUNPATH) also serves the bundled libraries' own needs
# (libopenblas -> libgfortran).
flags=(-c release --product tuna --static-swift-stdlib -Xlinker --disable-new-dtags -Xlinker -rpath -Xlinker '$ORIGIN/../lib')
swift build "${flags[@]}" || tuna_die "the release build failed (its errors are above)"
built=$(swift build "${flags[@]}" --show-bin-path)/tuna

version=$("$built" version --json | sed -n 's/.*"tuna" *: *"\([^"]*\)".*/\1/p')
[ -n "$version" ] || tuna_die "could not read the version from tuna version --json"
name=tuna-$version-linux-x86_64
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/$name
mkdir -p "$root/bin" "$root/lib" "$root/share/tuna" "$root/deploy" "$root/jobs"

cp "$built" "$root/bin/tuna"
# Debug information stays in the build folder; the symbol table stays for backtraces.
strip --strip-debug "$root/bin/tuna"

# Every shared library the binary loads except glibc's own (which the box has and must match).
ldd "$built" | awk '/=> \// { print $1, $3 }' | while read -r soname path; do
    case $soname in
        libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|libutil.so.*|libresolv.so.*|ld-linux*) continue ;;
    esac
    cp -L "$path" "$root/lib/$soname"
    strip --strip-unneeded "$root/lib/$soname"
done
ldd "$built" | grep -q "not found" && tuna_die "tuna needs a library this machine lacks: $(ldd "$built" | grep 'not found')"

# The torch trainer, as the worker runs it (`--torch-trainer worker/tuna-torch`).
mkdir -p "$root/worker"
cp -r worker/tuna_torch worker/tuna-torch worker/requirements.txt worker/README.md "$root/worker/"
# The job spec the torch trainer reads strictly (worker/tuna_torch/spec.py finds it at ../../contract).
cp -r contract "$root/contract"
find "$root/worker" -name __pycache__ -prune -exec rm -rf {} +
cp deploy/*.service "$root/deploy/"
cp -r deploy/slurm "$root/deploy/"
cp deploy/install.sh "$root/install.sh"
cp jobs/*.yaml "$root/jobs/"
cp README.md "$root/share/tuna/README.md"
cp docs/deploy.md "$root/share/tuna/deploy.md"

commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit+uncommitted"
echo "commit $commit, built $(date -u +%Y-%m-%dT%H:%M:%SZ) with $(swift --version 2>&1 | head -n1 | sed 's/ *(.*//') on $(. /etc/os-release && echo "$PRETTY_NAME"), glibc $(ldd --version | head -n1 | awk '{print $NF}')" \
    >"$root/share/tuna/BUILD"

mkdir -p "$out"
tar -C "$stage" -czf "$out/$name.tar.gz" "$name"
(cd "$out" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
echo "== $out/$name.tar.gz ($(du -h "$out/$name.tar.gz" | cut -f1)); $("$root/bin/tuna" version)"
