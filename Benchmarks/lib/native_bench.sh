# Sourced by Benchmarks/engine/run.sh and Benchmarks/train/run.sh: builds one native benchmark
# (PRODUCT, sources in Benchmarks/DIR) in release mode, in a private package under /tmp that
# links only TunaEngine, its TunaRandom and OpenBLAS (not the whole of Tuna), and prints the
# binary's path.
#   tuna_native_bench PRODUCT DIR
tuna_native_bench() {
    local product=$1 dir=$2 repo pkg
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    pkg="${TUNA_BENCH_PKG:-/tmp/tuna-$dir-bench-pkg}"
    mkdir -p "$pkg/Sources" "$pkg/Benchmarks"
    ln -sfn "$repo/Sources/TunaEngine" "$pkg/Sources/TunaEngine"
    ln -sfn "$repo/Sources/TunaRandom" "$pkg/Sources/TunaRandom"
    ln -sfn "$repo/Sources/CBLAS" "$pkg/Sources/CBLAS"
    ln -sfn "$repo/Benchmarks/$dir" "$pkg/Benchmarks/$dir"
    cat > "$pkg/Package.swift" <<SWIFT
// swift-tools-version:6.0
import PackageDescription
let package = Package(
    name: "Tuna${product}",
    targets: [
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .target(name: "TunaRandom"),
        .target(name: "TunaEngine", dependencies: ["CBLAS", "TunaRandom"]),
        .executableTarget(name: "$product", dependencies: ["TunaEngine", "CBLAS"], path: "Benchmarks/$dir",
                          exclude: ["bench.py", "README.md", "run.sh"]),
    ]
)
SWIFT
    swift build -j 1 -c release --package-path "$pkg" --product "$product" >&2
    echo "$pkg/.build/release/$product"
}
