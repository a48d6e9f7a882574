import Foundation
import XCTest
import TunaCore
import TunaWire

/// `tuna backup` taken while a sweep runs, restored with `tuna restore` into a new data
/// directory, served by a new coordinator: every sweep, result and artifact intact.
final class BackupTests: XCTestCase {
    func testABackupTakenDuringASweepRestoresIntoANewCoordinator() async throws {
        let live = try Cluster()
        defer { live.shutdown() }
        try live.startCoordinator()
        try live.startWorker("w", maxJobs: 2)
        let done = try await live.submit(live.toySpec(name: "done", "lr: [0.001, 0.002, 0.003]\nsteps: 5\nadapter_bytes: 200000"))
        try await live.waitUntil("the first sweep succeeds") { try await live.results(done.sweep).allSatisfy { $0.status == .succeeded } }
        let running = try await live.submit(live.toySpec(name: "running", "lr: [0.004]\nsteps: 300\nstep_ms: 20"))
        try await live.waitUntil("the second sweep runs") { try await live.results(running.sweep).first?.status == .running }

        let backup = live.dir.appendingPathComponent("backup")
        let data = live.dir.appendingPathComponent("data").path
        let took = try live.cliLocal(["backup", "--data-dir", data, "--out", backup.path])
        XCTAssertEqual(took.status, 0, took.out)
        let expected = try await live.results(done.sweep)
        let details = try await expected.asyncMap { try await live.job($0.id) }
        try await live.waitUntil("the running sweep finishes undisturbed") { try await live.results(running.sweep).first?.status == .succeeded }
        // Into the same folder again, twice: the second finds nothing new to copy.
        let later = live.dir.appendingPathComponent("later")
        for _ in 0..<2 { XCTAssertEqual(try live.cliLocal(["backup", "--data-dir", data, "--out", later.path]).status, 0) }
        let unchanged = try live.cliLocal(["backup", "--data-dir", data, "--out", later.path])
        XCTAssert(unchanged.out.contains("(0 copied, Zero KB)"), unchanged.out)

        let restored = try Cluster()
        defer { restored.shutdown() }
        let into = restored.dir.appendingPathComponent("data").path
        let back = try restored.cliLocal(["restore", "--from", backup.path, "--data-dir", into])
        XCTAssertEqual(back.status, 0, back.out)
        let twice = try restored.cliLocal(["restore", "--from", backup.path, "--data-dir", into])
        XCTAssertEqual(twice.status, 1)
        XCTAssert(twice.out.contains("already holds a tuna.sqlite"), twice.out)
        try restored.startCoordinator()
        let c = try await restored.client()
        defer { c.close() }
        let sweeps = try await c.send(ListSweeps()).rows
        XCTAssertEqual(sweeps.map(\.name), ["done", "running"])
        let got = try await restored.results(done.sweep)
        XCTAssertEqual(got.map(\.status), expected.map(\.status))
        XCTAssertEqual(got.map(\.final_train_loss), expected.map(\.final_train_loss))
        XCTAssertEqual(got.map(\.adapter_sha256), expected.map(\.adapter_sha256))
        for (row, before) in zip(got, details) {
            let after = try await restored.job(row.id)
            XCTAssertEqual(after.artifacts.map(\.sha256), before.artifacts.map(\.sha256))
            for a in after.artifacts {   // downloaded from the new coordinator, SHA-256 checked
                try await ArtifactTransfer.download(c, a, to: restored.dir.appendingPathComponent("fetched-\(a.sha256)"))
            }
        }
        let logs = try await restored.events(got[0].id)
        XCTAssertEqual(logs.filter { $0.event["event"]?.stringValue == "step" }.count, 5)
    }

    /// A damaged backup is refused with the artifact named, and nothing is left half-restored.
    func testARestoreRefusesACorruptArtifact() async throws {
        let live = try Cluster()
        defer { live.shutdown() }
        try live.startCoordinator()
        try live.startWorker("w")
        let s = try await live.submit(live.toySpec(name: "one", "steps: 3"))
        try await live.waitUntil("the job succeeds") { try await live.results(s.sweep).first?.status == .succeeded }
        let backup = live.dir.appendingPathComponent("backup")
        XCTAssertEqual(try live.cliLocal(["backup", "--data-dir", live.dir.appendingPathComponent("data").path, "--out", backup.path]).status, 0)
        let rows = try await live.results(s.sweep)
        let sha = try XCTUnwrap(rows.first?.adapter_sha256)
        let file = backup.appendingPathComponent("artifacts/\(sha.prefix(2))/\(sha)")
        try Data("tampered".utf8).write(to: file)
        let into = live.dir.appendingPathComponent("restored")
        let r = try live.cliLocal(["restore", "--from", backup.path, "--data-dir", into.path])
        XCTAssertEqual(r.status, 1)
        XCTAssert(r.out.contains("artifact \(sha)") && r.out.contains("corrupt"), r.out)
        XCTAssertFalse(FileManager.default.fileExists(atPath: into.appendingPathComponent("tuna.sqlite").path), "no database restored")
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for e in self { out.append(try await transform(e)) }
        return out
    }
}
