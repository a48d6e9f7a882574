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
# run from a directory with no Swift toolchain, and workers started by a real Slurm run a sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
source scripts/lib/setup.sh
tuna_require_build_tools
tuna_python_env "$repo"
# The Python checks are modules of the `scripts` package (python3 -m scripts.<part>.<check>); the
# torch trainer they check is worker/tuna_torch.
export PYTHONPATH="$repo:$repo/worker${PYTHONPATH:+:$PYTHONPATH}"
swift build --build-tests
swift test --skip-build
echo "== tokenizer and harmony goldens against tiktoken and openai-harmony"
python3 -m scripts.text.make_goldens --check
echo "== native engine against transformers on a fresh random gpt-oss"
python3 -m scripts.engine.live_check
echo "== demo kit: tiny gpt-oss + tokenizer (Swift-written) against transformers, tokenizers, tiktoken"
python3 -m scripts.engine.tiny_model_check
python3 -m scripts.demo.make_data --check
echo "== tuna eval against transformers"
python3 -m scripts.engine.eval_check --tuna "$(swift build --show-bin-path)/tuna"
echo "== LoRA goldens still what PEFT + transformers + torch compute"
python3 -m scripts.engine.make_lora_goldens --check
echo "== native LoRA training against PEFT on a fresh random gpt-oss, adapter loaded back by PEFT"
python3 -m scripts.engine.lora_live_check
echo "== tuna merge: merged checkpoints load in transformers without PEFT and compute base + adapter"
python3 -m scripts.engine.merge_check --tuna "$(swift build --show-bin-path)/tuna"
echo "== expert pruning: pruned checkpoints are the base's kept rows and load in transformers"
python3 -m scripts.engine.prune_check --tuna "$(swift build --show-bin-path)/tuna"
echo "== torch trainer unit tests (worker/tests): the published job spec read strictly, no defaults of its own"
python3 -m pytest -q worker/tests
echo "== torch trainer fast-path pieces (MXFP4 experts, LoRA layers, cross-entropy) against transformers, PEFT, autograd"
python3 -m scripts.torch.mxfp4_check
echo "== torch trainer (worker/tuna_torch) against the native trainer on the same job, DDP, SIGTERM, resume"
python3 -m scripts.torch.agreement_check --full --tuna "$(swift build --show-bin-path)/tuna"
echo "== torch trainer prune jobs against the native prune runner: same experts kept, same numbers, same checkpoint"
python3 -m scripts.torch.prune_agreement_check --tuna "$(swift build --show-bin-path)/tuna"
echo "== release tarball: built, unpacked where no Swift toolchain is reachable, a native sweep run from it"
scripts/release.sh --out "$repo/.build/dist"
scripts/release_check.sh "$repo"/.build/dist/tuna-*-linux-x86_64.tar.gz
echo "== Slurm: workers started by sbatch run a sweep; scancel mid-job hands the job back"
slurm_missing=$(tuna_missing_packages slurm-wlm munge)
[ -z "$slurm_missing" ] || tuna_apt_install $slurm_missing
scripts/slurm/slurm_check.sh --tuna "$(swift build --show-bin-path)/tuna" --toy "$(swift build --show-bin-path)/ToyTrainer"
