#!/usr/bin/env bash
# Every test: builds the package with its tests and runs them all (unit, store, end-to-end
# with real coordinator and worker processes on loopback, tokenizer and templates against
# committed goldens), then re-derives the goldens with the real Python libraries to prove
# they are not stale. .ci/run installs those libraries first.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --build-tests
swift test --skip-build
echo "== tokenizer and harmony goldens against tiktoken and openai-harmony"
python3 scripts/text/make_goldens.py --check
