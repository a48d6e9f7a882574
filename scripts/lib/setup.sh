# Sourced by scripts/demo.sh, scripts/test.sh and scripts/release.sh: makes sure what they need
# is here, installing what it can (as root, with apt-get) and otherwise stopping with one line
# that names the missing piece and the command that installs it. Nothing here hides output:
# an install or build that fails shows why.

# The Debian packages the build links against (SQLite for the store, OpenBLAS for the native
# engine, OpenSSL headers for the crypto package's build).
TUNA_BUILD_PACKAGES=(libsqlite3-dev libssl-dev libopenblas-dev)

tuna_die() { echo "error: $*" >&2; exit 1; }

# tuna_apt_install PKG...: installs Debian packages, or stops saying how to.
tuna_apt_install() {
    local how="apt-get install -y $*"
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "== installing Debian packages: $*"
        # an update only when the package lists are empty or the first try fails (stale lists)
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; then
            apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" \
                || tuna_die "could not install $* (see apt-get's output above)"
        fi
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null && command -v apt-get >/dev/null; then
        echo "== installing Debian packages with sudo: $*"
        sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" \
            || { sudo -n apt-get update -q && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; } \
            || tuna_die "could not install $* (see apt-get's output above)"
    elif command -v apt-get >/dev/null; then
        tuna_die "missing Debian packages: $* -- install them with: sudo $how"
    else
        tuna_die "missing system libraries: $* (Debian names) -- install their equivalents with your package manager"
    fi
}

# tuna_missing_packages PKG...: prints those not installed (dpkg's view).
tuna_missing_packages() {
    local p
    for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"; done
}

# tuna_require_build_tools: Swift 6, a C compiler and the -dev packages; installs the packages
# when it can.
tuna_require_build_tools() {
    command -v swift >/dev/null \
        || tuna_die "Swift is missing: install the Swift 6 toolchain (swift.org/install) and put its bin/ on PATH"
    local v
    v=$(swift --version 2>&1 | sed -n 's/.*Swift version \([0-9]*\)\..*/\1/p' | head -n1)
    [ -n "$v" ] && [ "$v" -ge 6 ] \
        || tuna_die "Swift 6 or newer is needed, found: $(swift --version 2>&1 | head -n1)"
    command -v cc >/dev/null || command -v gcc >/dev/null || command -v clang >/dev/null \
        || tuna_die "no C compiler (cc, gcc or clang): install one, e.g. apt-get install -y gcc"
    if command -v dpkg-query >/dev/null; then
        local missing
        mapfile -t missing < <(tuna_missing_packages "${TUNA_BUILD_PACKAGES[@]}")
        [ ${#missing[@]} -eq 0 ] || tuna_apt_install "${missing[@]}"
    fi
}

# tuna_python_env: makes (or reuses) the repository's own Python environment, .venv, with the
# pinned reference libraries of scripts/requirements.txt, and puts it first on PATH so that
# `python3` is that environment's. Reused while the requirements files are unchanged (scripts/
# requirements.txt reads worker/requirements.txt).
tuna_python_env() {
    local repo=$1 venv=$1/.venv req=$1/scripts/requirements.txt
    command -v python3 >/dev/null || tuna_die "python3 is missing: apt-get install -y python3 python3-venv"
    local stamp
    stamp=$(cat "$req" "$repo/worker/requirements.txt" | sha256sum | cut -d' ' -f1)
    if [ -x "$venv/bin/python3" ] && [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" = "$stamp" ]; then
        export PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv"
        return
    fi
    echo "== making the Python environment for the reference checks ($venv, from scripts/requirements.txt)"
    rm -rf "$venv"
    if ! python3 -m venv "$venv"; then
        rm -rf "$venv"
        # Debian ships venv's pip bootstrap separately
        tuna_apt_install python3-venv
        python3 -m venv "$venv" || tuna_die "python3 -m venv failed (see above)"
    fi
    if ! "$venv/bin/python3" -m pip install -q -r "$req"; then
        rm -rf "$venv"
        tuna_die "pip could not install scripts/requirements.txt (see above); torch's CPU build (torch==...+cpu) comes from PyTorch's CPU wheel index: pass it with PIP_EXTRA_INDEX_URL or PIP_FIND_LINKS"
    fi
    echo "$stamp" >"$venv/.requirements.sha256"
    export PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv"
}
