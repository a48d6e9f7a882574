#!/usr/bin/env bash
# The long fuzz run (issue 13): a million hostile frames (or $1) at a real coordinator process
# while a worker is registered, then a real sweep through it. CI runs the same test with 200,000
# (Tests/TunaIntegrationTests/FuzzTests.swift). Set TUNA_FUZZ_SEED to replay a run; the seed is
# printed first.
#   scripts/fuzz.sh [FRAMES]
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --build-tests
TUNA_FUZZ_FRAMES="${1:-1000000}" swift test --skip-build --filter FuzzTests 2>&1 | tee "${TUNA_FUZZ_LOG:-/tmp/tuna-fuzz.log}" | grep -E "^fuzz:|error|Executed"
