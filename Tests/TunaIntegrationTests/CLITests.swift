import Foundation
import XCTest
@testable import TunaCore

/// The CLI's exit codes, as a script would see them (issue 13, finding 6): 0 success, 1 the
/// command failed (one line, no usage text), 2 bad usage (the message and the usage).
final class CLITests: XCTestCase {
    var cluster: Cluster!

    override func setUpWithError() throws { cluster = try Cluster() }
    override func tearDown() { cluster?.shutdown() }

    func testFailuresExitOneWithoutUsageAndBadUsageExitsTwo() throws {
        let missing = try cluster.cliLocal(["submit", "--dry-run", "/nonexistent/spec.yaml"])
        XCTAssertEqual(missing.status, 1, missing.out)
        XCTAssert(missing.out.contains("cannot read /nonexistent/spec.yaml"), missing.out)
        XCTAssertFalse(missing.out.contains("USAGE") || missing.out.contains("Usage"), missing.out)

        let spec = cluster.dir.appendingPathComponent("bad.yaml")
        try "name: b\ntrainer: native\nmodel: m\ndataset: {path: d}\nlora: {rank: -4}\n".write(to: spec, atomically: true, encoding: .utf8)
        let refused = try cluster.cliLocal(["submit", "--dry-run", spec.path])
        XCTAssertEqual(refused.status, 1, refused.out)
        XCTAssert(refused.out.contains("lora.rank: -4 is not a positive integer"), refused.out)
        XCTAssertFalse(refused.out.contains("ErrorReply") || refused.out.contains("TunaError"), "a debug description: \(refused.out)")

        let usage = try cluster.cliLocal(["submit"])
        XCTAssertEqual(usage.status, 2, usage.out)
        XCTAssert(usage.out.contains("Usage") || usage.out.contains("USAGE"), usage.out)
    }

    /// `tuna watch` follows a sweep to its end and exits 1 when a job failed, so `watch && …`
    /// does not go on with a broken sweep.
    func testWatchExitsOneWhenAJobFailed() async throws {
        try cluster.startCoordinator()
        try cluster.startWorker("w1")
        let s = try await cluster.submit(cluster.toySpec("i: [1, 2]\nsteps: 6\nstep_ms: 5\nmax_attempts: 1\nfail_attempts: 1"))
        let watched = try cluster.cli(["watch", "\(s.sweep)", "--interval", "0.2"])
        XCTAssertEqual(watched.status, 1, watched.out)
        XCTAssert(watched.out.contains("sweep \(s.sweep): 2 job(s) failed"), watched.out)
    }
}
