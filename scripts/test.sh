#!/usr/bin/env bash
# Every test: builds the package with its tests and runs them all (unit, store, end-to-end
# with real coordinator and worker processes on loopback, tokenizer, templates and the native
# engine against committed goldens), then the live checks against the real Python libraries:
# the tokenizer/harmony goldens re-derived with tiktoken and openai-harmony, the engine on a
# freshly drawn random gpt-oss against transformers, and `tuna eval` against transformers.
# .ci/run installs those libraries first.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --build-tests
swift test --skip-build
echo "== tokenizer and harmony goldens against tiktoken and openai-harmony"
python3 scripts/text/make_goldens.py --check
echo "== native engine against transformers on a fresh random gpt-oss"
python3 scripts/engine/live_check.py
echo "== tuna eval against transformers"
python3 scripts/engine/eval_check.py --tuna "$(swift build --show-bin-path)/tuna"
