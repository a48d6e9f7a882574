#!/usr/bin/env bash
# Every test: builds the package with its tests and runs them all (unit, store, end-to-end
# with real coordinator and worker processes on loopback, tokenizer, templates and the native
# engine against committed goldens), then the live checks against the real Python libraries:
# the tokenizer/harmony goldens re-derived with tiktoken and openai-harmony, the engine on a
# freshly drawn random gpt-oss against transformers, `tuna eval` against transformers, and
# LoRA training (gradients, clipping, AdamW, schedules, saved adapters) against PEFT + torch.
# It sets itself up: the Debian packages the build needs (installed when run as root, else one
# line saying what to install) and a Python environment of its own (.venv, pinned in
# scripts/requirements.txt) for the reference libraries. Then the release tarball is built and
# run from a directory with no Swift toolchain (also the multi-GPU benchmark's machinery, on fake
# GPUs), and workers started by a real Slurm run a sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
source scripts/lib/setup.sh
tuna_require_build_tools
tuna_python_env "$repo"
swift build --build-tests
# The TLS tests make their certificates with openssl; the full-disk test mounts a tmpfs with
# util-linux's unshare; `tuna plot --out F.png` renders its SVG with librsvg's rsvg-convert; the
# dashboard's browser test drives Debian's chromium headless (DashboardTests).
test_missing=$(tuna_missing_packages openssl util-linux librsvg2-bin chromium)
[ -z "$test_missing" ] || tuna_apt_install $test_missing
swift test --skip-build
bin=$(swift build --show-bin-path)
echo "== torch trainer unit tests (worker/tests): the published job spec read strictly, no defaults of its own"
python3 -m pytest -q worker/tests
# The reference checks are the pytest suite Tests/Python (its pytest.ini puts the reference package
# and worker/ on the path). Quick ones first: the tokenizer/harmony goldens against tiktoken and
# openai-harmony; the native engine on a fresh random gpt-oss, the demo kit, tuna eval, LoRA training
# (goldens and a fresh draw), tuna merge and expert pruning against transformers + PEFT; the torch
# trainer's fast-path pieces. Then the torch trainer against the native one (--full: with gradient
# checkpointing, DDP, SIGTERM and resume), and its prune jobs against the native prune runner.
# The seed of every random draw is the clock's, printed in the header with the command that reruns it.
echo "== reference checks (Tests/Python) against tiktoken, openai-harmony, transformers, PEFT and torch"
python3 -m pytest -v --capture=tee-sys Tests/Python --tuna "$bin/tuna" --full
echo "== release tarball: built, unpacked where no Swift toolchain is reachable, a native sweep run from it"
scripts/release.sh --out "$repo/.build/dist"
scripts/release_check.sh "$repo"/.build/dist/tuna-*-linux-x86_64.tar.gz
echo "== several GPUs, as a dry run: Benchmarks/gpu/multi_gpu.py from the tarball on two fake GPUs (gloo, a tiny model)"
python3 Benchmarks/gpu/multi_gpu.py --small --gpus 2 --tarball "$repo"/.build/dist/tuna-*-linux-x86_64.tar.gz --state "$(mktemp -d)"
echo "== Slurm: workers started by sbatch run a sweep; scancel mid-job hands the job back"
slurm_missing=$(tuna_missing_packages slurm-wlm munge)
[ -z "$slurm_missing" ] || tuna_apt_install $slurm_missing
scripts/slurm/slurm_check.sh --tuna "$bin/tuna" --toy "$bin/ToyTrainer"
