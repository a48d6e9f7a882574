// swift-tools-version:6.1
// Tuna: LoRA fine-tuning sweeps of Mixture-of-Experts models across a fleet of GPU boxes.
//
// Modules import in one direction:
//   TunaRandom (the one seeded generator) <- TunaCore, TunaText, TunaEngine
//   TunaCore  <- TunaStore <- TunaDashboard <- TunaCoordinator
//   TunaCore  <- TunaWire  <- TunaCoordinator, TunaWorker
//   TunaText, TunaEngine <- TunaTrain (the native trainer loop)
//   everything <- tuna (the CLI, one executable)
// Only TunaStore speaks SQL, only TunaWire (and the two daemons built on it) speak NIO;
// only TunaDashboard speaks HTTP (Hummingbird), on the coordinator's second port.
import PackageDescription

let package = Package(
    name: "Tuna",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "tuna", targets: ["tuna"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // TLS on the protocol (BoringSSL through NIO's handlers).
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // The dashboard and /metrics (`tuna coordinator --http`): Hummingbird for HTTP (without its
        // swift-configuration trait, which Tuna does not use), Mustache for the pages, the
        // Prometheus client for the text format.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // SplitMix64: the one seeded generator (sweeps, data splits, LoRA init, tiny models).
        .target(name: "TunaRandom", dependencies: []),
        .target(name: "TunaCore", dependencies: [
            "TunaRandom",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // The coordinator's two modules live in coordinator/, the worker daemon in worker/
        // (next to the torch trainer): the top-level folders are the architecture.
        .target(name: "TunaStore", dependencies: [
            "TunaCore",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "GRDBSQLite", package: "GRDB.swift"),
        ], path: "coordinator/TunaStore"),
        .target(name: "TunaWire", dependencies: [
            "TunaCore",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        // The web dashboard and /metrics: pages, JSON, live updates, on Hummingbird.
        .target(name: "TunaDashboard", dependencies: [
            "TunaCore", "TunaStore",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTLS", package: "hummingbird"),
            .product(name: "Mustache", package: "swift-mustache"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ], path: "coordinator/TunaDashboard"),
        .target(name: "TunaCoordinator", dependencies: [
            "TunaCore", "TunaStore", "TunaWire", "TunaDashboard",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
        ], path: "coordinator/TunaCoordinator"),
        .target(name: "TunaWorker", dependencies: [
            "TunaCore", "TunaWire",
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ], path: "worker/TunaWorker"),
        .executableTarget(name: "tuna", dependencies: [
            "TunaCore", "TunaStore", "TunaWire", "TunaCoordinator", "TunaWorker", "TunaText", "TunaEngine", "TunaTrain",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        // OpenBLAS's cblas, the only BLAS the native engine speaks.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", providers: [.apt(["libopenblas-dev"])]),
        // Tokenizer (o200k_harmony BPE), chat templates (harmony, im_start) and data set loaders.
        .target(name: "TunaText", dependencies: ["TunaRandom"]),
        // The native gpt-oss engine: safetensors, MXFP4, the forward pass, on OpenBLAS.
        // Optimized even in debug builds: the demo, `swift test` and `tuna train` from a debug
        // build would otherwise run the engine's loops 10x+ slower; nobody single-steps them.
        .target(name: "TunaEngine", dependencies: ["CBLAS", "TunaRandom"], swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        // The native LoRA trainer: job spec -> data -> engine -> AdamW -> PEFT adapter (`tuna train`).
        .target(name: "TunaTrain", dependencies: ["TunaCore", "TunaText", "TunaEngine", "TunaRandom"]),
        // A tiny trainer that speaks the trainer contract; the integration tests and the
        // dispatch benchmark run sweeps through it with the `command` trainer.
        .executableTarget(name: "ToyTrainer", dependencies: []),
        // The control-plane benchmark (docs/performance.md): 200 simulated workers on loopback.
        .executableTarget(name: "DispatchBench", dependencies: [
            "TunaCore", "TunaWire", .product(name: "GRDB", package: "GRDB.swift"),
        ], path: "Benchmarks/dispatch"),
        // Search methods replayed on a learning-curve table of native runs (Benchmarks/search/run.sh).
        .executableTarget(name: "SearchBench", dependencies: ["TunaCore", "TunaRandom"], path: "Benchmarks/search",
                          exclude: ["README.md", "run.sh", "make_curves.py", "optuna_replay.py", "space.yaml", "curves.csv", "logs"]),
        // Tokenizer throughput against tiktoken (Benchmarks/tokenizer/run.sh).
        .executableTarget(name: "TokenizerBench", dependencies: ["TunaText"], path: "Benchmarks/tokenizer",
                          exclude: ["bench_tiktoken.py", "run.sh"]),
        // Native forward vs PyTorch CPU, and GFLOP/s vs OpenBLAS's sgemm (Benchmarks/engine/run.sh).
        .executableTarget(name: "EngineBench", dependencies: ["TunaEngine", "CBLAS"], path: "Benchmarks/engine",
                          exclude: ["bench.py", "README.md", "run.sh"]),
        .testTarget(name: "TunaCoreTests", dependencies: ["TunaCore"]),
        .testTarget(name: "TunaTextTests", dependencies: ["TunaText", "TunaRandom"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TunaEngineTests", dependencies: ["TunaEngine", "TunaText", "TunaRandom"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TunaTrainTests", dependencies: ["TunaTrain", "TunaEngine", "TunaText", "TunaCore"]),
        .testTarget(name: "TunaStoreTests", dependencies: ["TunaCore", "TunaStore", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "TunaWireTests", dependencies: [
            "TunaCore", "TunaWire",
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio"),
        ]),
        .testTarget(name: "TunaIntegrationTests", dependencies: [
            "TunaCore", "TunaRandom", "TunaStore", "TunaWire", "TunaCoordinator", "TunaWorker", "TunaEngine", "TunaDashboard",
        ]),
    ]
)
