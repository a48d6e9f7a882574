#!/usr/bin/env bash
# Native TunaEngine LoRA training vs PyTorch CPU (transformers + PEFT) on the same random gpt-oss
# (see README.md). Builds TrainBench in a private package under /tmp (the main Package.swift has
# no target for it), then runs bench.py. Extra arguments go to bench.py (e.g. --threads 2 --steps 3).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
pkg="${TUNA_TRAIN_BENCH_PKG:-/tmp/tuna-train-bench-pkg}"
mkdir -p "$pkg/Sources" "$pkg/Benchmarks"
ln -sfn "$repo/Sources/TunaEngine" "$pkg/Sources/TunaEngine"
ln -sfn "$repo/Sources/CBLAS" "$pkg/Sources/CBLAS"
ln -sfn "$repo/Benchmarks/train" "$pkg/Benchmarks/train"
cat > "$pkg/Package.swift" <<'SWIFT'
// swift-tools-version:6.0
import PackageDescription
let package = Package(
    name: "TunaTrainBench",
    targets: [
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .target(name: "TunaEngine", dependencies: ["CBLAS"]),
        .executableTarget(name: "TrainBench", dependencies: ["TunaEngine", "CBLAS"], path: "Benchmarks/train",
                          exclude: ["bench.py", "README.md", "run.sh"]),
    ]
)
SWIFT
swift build -j 1 -c release --package-path "$pkg" --product TrainBench
python3 "$repo/Benchmarks/train/bench.py" --train-bench "$pkg/.build/release/TrainBench" "$@"
