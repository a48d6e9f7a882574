#!/usr/bin/env bash
# Native TunaEngine vs PyTorch CPU fp32 on the same random gpt-oss (see README.md).
# Builds EngineBench in a private package under /tmp (the main package has no target for it),
# then runs bench.py. Extra arguments go to bench.py (e.g. --threads 2 --rounds 3).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
pkg="${TUNA_ENGINE_BENCH_PKG:-/tmp/tuna-engine-bench-pkg}"
mkdir -p "$pkg/Sources" "$pkg/Benchmarks"
ln -sfn "$repo/Sources/TunaEngine" "$pkg/Sources/TunaEngine"
ln -sfn "$repo/Sources/CBLAS" "$pkg/Sources/CBLAS"
ln -sfn "$repo/Benchmarks/engine" "$pkg/Benchmarks/engine"
cat > "$pkg/Package.swift" <<'SWIFT'
// swift-tools-version:6.0
import PackageDescription
let package = Package(
    name: "TunaEngineBench",
    targets: [
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .target(name: "TunaEngine", dependencies: ["CBLAS"]),
        .executableTarget(name: "EngineBench", dependencies: ["TunaEngine", "CBLAS"], path: "Benchmarks/engine",
                          exclude: ["bench.py", "README.md", "run.sh"]),
    ]
)
SWIFT
swift build -j 1 -c release --package-path "$pkg" --product EngineBench
python3 "$repo/Benchmarks/engine/bench.py" --engine-bench "$pkg/.build/release/EngineBench" "$@"
