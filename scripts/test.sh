#!/usr/bin/env bash
# Every test: builds the package with its tests and runs them all (unit, store, end-to-end
# with real coordinator and worker processes on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --build-tests
swift test --skip-build
