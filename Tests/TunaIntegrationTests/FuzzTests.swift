import Foundation
import XCTest
import TunaCore
import TunaWire

/// Hostile frames at a real coordinator process while a worker is registered: it must stay up,
/// keep its memory bounded, and run a real sweep afterwards. `TUNA_FUZZ_FRAMES` sets the count
/// (default 200,000, under a minute here; scripts/fuzz.sh runs 1,000,000) and `TUNA_FUZZ_SEED`
/// the seed (printed, so a failure can be replayed).
final class FuzzTests: XCTestCase {
    func testTheCoordinatorSurvivesHostileFramesAndStillRunsASweep() async throws {
        let env = ProcessInfo.processInfo.environment
        let total = Int(env["TUNA_FUZZ_FRAMES"] ?? "") ?? 200_000
        let seed = UInt64(env["TUNA_FUZZ_SEED"] ?? "") ?? UInt64(Date().timeIntervalSince1970)
        print("fuzz: \(total) frames, seed \(seed) (replay: TUNA_FUZZ_SEED=\(seed) TUNA_FUZZ_FRAMES=\(total) swift test --filter FuzzTests)")
        let cluster = try Cluster()
        defer { cluster.shutdown() }
        let token = "fuzz-token"
        let tokenFile = cluster.dir.appendingPathComponent("token")
        try token.write(to: tokenFile, atomically: true, encoding: .utf8)
        cluster.extraCoordinatorArgs = ["--token-file", tokenFile.path]
        try cluster.startCoordinator()
        try cluster.startWorker("steady", extra: ["--token-file", tokenFile.path])
        let pid = try XCTUnwrap(cluster.coordinator?.processIdentifier)
        let before = rssMiB(pid)

        let threads = 8, perConnection = 50
        let connections = (total + perConnection - 1) / perConnection
        let start = Date()
        let port = cluster.port
        let refused = ManagedAtomicCount()
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            var fuzz = FrameFuzzer(seed: seed &+ UInt64(t), token: token)
            var c = t
            while c < connections {
                if !blast(port: port, fuzz.connection(frames: perConnection)) { refused.add() }
                c += threads
            }
        }
        let seconds = Date().timeIntervalSince(start)
        let after = rssMiB(pid)
        print(String(format: "fuzz: %d frames over %d connections in %.1f s (%.0f frames/s); coordinator RSS %d MiB before, %d MiB after; %d connects refused",
                     total, connections, seconds, Double(total) / seconds, before, after, refused.value))
        XCTAssertTrue(cluster.coordinator?.isRunning ?? false, "the coordinator died; seed \(seed)\n\(cluster.log("coordinator.log").suffix(3000))")
        XCTAssertLessThan(after, 400, "coordinator memory bounded")
        XCTAssertLessThan(refused.value, connections / 100, "connections kept being accepted")

        // Still a working coordinator: the registered worker runs a real sweep. The fuzzer's valid
        // specs were stored and ran on it (`command: [x]` fails, so it may be quarantined by now):
        // cancel them and lift the quarantine first, as an operator would.
        let cfg = try await WireClient.connect(HostPort(host: "127.0.0.1", port: port), token: token, role: "client")
        defer { cfg.close() }
        let fuzzed = try await cfg.send(ListSweeps()).rows
        for sweep in fuzzed { _ = try await cfg.send(CancelRequest(sweep: sweep.id)) }
        _ = try await cfg.send(Unquarantine(worker: "steady"))
        print("fuzz: \(fuzzed.count) sweeps were accepted from the fuzzer's specs (cancelled)")
        let s = try await cfg.send(Submit(spec: cluster.toySpec(name: "after-fuzz", "lr: [0.001, 0.002]\nsteps: 5")))
        try await cluster.waitUntil("the sweep after the fuzzing succeeds") {
            try await cfg.sendRaw(ResultsQuery(sweep: s.sweep)).resultRows().allSatisfy { $0.status == .succeeded }
        }
    }

    func rssMiB(_ pid: Int32) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) / 1024
    }
}

final class ManagedAtomicCount: @unchecked Sendable {
    private var n = 0
    private let lock = NSLock()
    func add() { lock.lock(); n += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}
