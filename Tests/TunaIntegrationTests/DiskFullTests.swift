import Foundation
import XCTest
import TunaCore
import TunaWire

/// Issue 13, finding 5: the coordinator's data directory fills up during a sweep. Before, the
/// refused uploads counted as job failures and against the workers (both quarantined within
/// about 4 s), `.part` files stayed behind and the coordinator's log said nothing. Now the
/// disk is the coordinator's fault: the jobs wait, the workers keep their files and retry, the
/// log and `tuna status`/`tuna workers` say so loudly, and once there is room every job
/// succeeds in its first attempt.
final class DiskFullTests: XCTestCase {
    func testAFullCoordinatorDiskMakesJobsWaitNotFail() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare") else {
            throw XCTSkip("needs /usr/bin/unshare (util-linux) to give the coordinator a small tmpfs of its own")
        }
        let cluster = try Cluster(leaseMs: 3000)
        defer { cluster.shutdown() }
        let data = cluster.dir.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        let portFile = cluster.dir.appendingPathComponent("port")
        // The coordinator in its own mount namespace, its data directory a 12 MiB tmpfs of which
        // a 7 MiB filler takes most: room for the database and two or three 1.5 MiB adapters.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        // As root, a mount namespace is enough; otherwise a user namespace makes us root in it
        // (sockets made there cannot take every option, but the tmpfs is what matters).
        p.arguments = (getuid() == 0 ? ["--mount"] : ["--user", "--map-root-user", "--mount"]) + ["sh", "-c",
                       #"mount -t tmpfs -o size=12m tmpfs "$0" && head -c 7340032 /dev/zero > "$0/filler" && exec "$1" coordinator --listen 127.0.0.1:0 --data-dir "$0" --lease-ms 3000 --backoff-ms 200 --port-file "$2""#,
                       data.path, cluster.bin.appendingPathComponent("tuna").path, portFile.path]
        let logURL = cluster.dir.appendingPathComponent("coordinator.log")
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: logURL)
        p.standardError = p.standardOutput
        try p.run()
        cluster.coordinator = p
        try await cluster.waitUntil("the coordinator listens", timeout: 20) {
            if !p.isRunning { throw XCTSkip("cannot mount a tmpfs in a user namespace here: \(cluster.log("coordinator.log"))") }
            guard let s = try? String(contentsOf: portFile, encoding: .utf8), let port = Int(s.trimmingCharacters(in: .whitespacesAndNewlines)) else { return false }
            cluster.port = port
            return true
        }
        // What the coordinator sees at `data` (its tmpfs), from outside its mount namespace.
        let inside = URL(fileURLWithPath: "/proc/\(p.processIdentifier)/root" + data.path)

        try cluster.startWorker("a")
        try cluster.startWorker("b")
        let adapterBytes = 1_572_864
        let s = try await cluster.submit(cluster.toySpec(name: "fills", "lr: [0.001, 0.002, 0.003, 0.004]\nsteps: 6\nstep_ms: 20\nadapter_bytes: \(adapterBytes)\nmax_attempts: 1"))
        let c = try await cluster.client()
        defer { c.close() }
        try await cluster.waitUntil("the coordinator reports its disk full", timeout: 60) {
            try await c.send(CoordinatorStatusQuery()).storage_problem != nil
        }
        // Full for a while: the jobs wait, nothing is failed, no worker is blamed.
        try await Task.sleep(nanoseconds: 3_000_000_000)
        let during = try await cluster.results(s.sweep)
        XCTAssertEqual(during.filter { $0.status == .failed }.count, 0, "\(during.map { ($0.status, $0.error) })")
        XCTAssertGreaterThan(during.filter { $0.status == .running }.count, 0, "some jobs wait to upload")
        let workers = try await c.send(ListWorkers()).rows
        XCTAssertEqual(workers.map(\.consecutive_failures), [0, 0])
        XCTAssertEqual(workers.map(\.quarantined), [false, false])
        let status = try await c.send(CoordinatorStatusQuery())
        XCTAssert(status.storage_problem?.contains("No space left on device") ?? false, status.storage_problem ?? "")
        XCTAssert(cluster.log("coordinator.log").contains("STORAGE:"), "the coordinator says so in its log")
        let shown = try cluster.cli(["workers"])
        XCTAssert(shown.out.contains("STORAGE") && shown.out.contains("refusing writes"), shown.out)

        // Room again: every job succeeds, each in its first attempt, and nothing is left behind.
        try FileManager.default.removeItem(at: inside.appendingPathComponent("filler"))
        try await cluster.waitUntil("every job succeeds once there is room", timeout: 90) {
            try await cluster.results(s.sweep).allSatisfy { $0.status == .succeeded }
        }
        let after = try await cluster.results(s.sweep)
        XCTAssertEqual(after.map(\.attempts), [1, 1, 1, 1], "no attempt was lost to the full disk")
        for row in after {
            let d = try await cluster.job(row.id)
            let adapter = try XCTUnwrap(d.artifacts.first { $0.name == "adapter_model.safetensors" })
            XCTAssertEqual(adapter.size, Int64(adapterBytes))
            let back = cluster.dir.appendingPathComponent("back-\(row.id)")
            try await ArtifactTransfer.download(c, adapter, to: back)   // checks the SHA-256
        }
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: inside.appendingPathComponent("uploads").path)) ?? []
        XCTAssertEqual(leftovers, [], "no .part file left behind")
        try await cluster.waitUntil("the status clears", timeout: 10) {
            try await c.send(CoordinatorStatusQuery()).storage_problem == nil
        }
        XCTAssert(cluster.log("coordinator.log").contains("writable again"), cluster.log("coordinator.log"))
    }
}
