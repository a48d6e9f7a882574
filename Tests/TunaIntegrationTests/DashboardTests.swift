import Foundation
import XCTest
import TunaCore
import TunaCoordinator
@testable import TunaDashboard
import TunaStore

/// The dashboard and /metrics (issue 15) on a real coordinator with two real workers running a
/// sweep, checked from outside by Tests/Python/check_dashboard.py: every page and JSON endpoint,
/// the login, the live stream, a real browser (Debian's chromium) drawing the sweep and taking a
/// new eval without a reload, and /metrics through prometheus_client's parser against the
/// database. Skipped where chromium or the Python packages are missing, except in CI, which
/// installs them (scripts/test.sh, scripts/requirements.txt).
final class DashboardTests: XCTestCase {
    var cluster: Cluster!

    override func setUpWithError() throws {
        let chromium = Cluster.succeeds(["chromium", "--version"])
        let python = Cluster.succeeds(["python3", "-c", "import prometheus_client, websocket"])
        if !chromium || !python {
            let missing = (chromium ? [] : ["chromium"]) + (python ? [] : ["prometheus_client/websocket-client"])
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail("CI: missing \(missing)") }
            throw XCTSkip("missing \(missing.joined(separator: ", "))")
        }
        cluster = try Cluster()
    }

    override func tearDown() { cluster?.shutdown() }

    func testTheDashboardShowsARunningSweepLiveAndMetricsMatchTheDatabase() async throws {
        let httpPortFile = cluster.dir.appendingPathComponent("http-port")
        cluster.extraCoordinatorArgs = ["--http", "127.0.0.1:0", "--http-port-file", httpPortFile.path]
        try cluster.startCoordinator()
        try cluster.startWorker("w1")
        try cluster.startWorker("w2")
        // Long enough (about 25 s) for the browser to see it running.
        let s = try await cluster.submit(cluster.toySpec("""
            lr: [0.001, 0.003, 0.01]
            loss_scale: [1, 2]
            steps: 40
            step_ms: 150
            eval_every: 4
            """))
        let httpPort = try XCTUnwrap(Int((try String(contentsOf: httpPortFile, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
        var args = ["--url", "http://127.0.0.1:\(httpPort)", "--token", try XCTUnwrap(LocalToken.read(port: cluster.port)),
                    "--sweep", "\(s.sweep)", "--db", cluster.dir.appendingPathComponent("data/tuna.sqlite").path,
                    "--workers", "w1,w2", "--varying", "loss_scale,lr", "--tuna", cluster.bin.appendingPathComponent("tuna").path]
        if let dir = ProcessInfo.processInfo.environment["TUNA_SCREENSHOTS"] { args += ["--screenshots", dir] }
        let (status, out) = try cluster.runPython("check_dashboard.py", args, stderr: true)
        print(out)
        XCTAssertEqual(status, 0, out + "\n--- coordinator.log\n" + String(cluster.log("coordinator.log").suffix(3000)))
        XCTAssert(out.contains("all dashboard checks passed"), out)
    }
}

final class DashboardConfigTests: XCTestCase {
    /// Off loopback the dashboard follows the protocol's rules: no port without tokens, and
    /// HTTPS (the protocol's certificate) unless plaintext is asked for.
    func testTheDashboardOffLoopbackNeedsATokenAndTLS() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tuna-dash-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: dir) }
        var config = CoordinatorConfig(listen: HostPort(host: "127.0.0.1", port: 0), dataDir: dir, token: nil)
        config.http = HostPort(host: "0.0.0.0", port: 0)
        XCTAssertThrowsError(try CoordinatorServer(config: config)) { XCTAssert("\($0)".contains("a token is required for the dashboard"), "\($0)") }
        config.token = "sesame"
        XCTAssertThrowsError(try CoordinatorServer(config: config)) { XCTAssert("\($0)".contains("dashboard serves HTTPS"), "\($0)") }
        config.insecurePlaintext = true
        XCTAssertNoThrow(try CoordinatorServer(config: config))
    }
}

/// The dashboard's rules that need no browser: the live feed's overflow (one `reload`, however
/// many updates a slow page lost), where a login may send the browser, and which Host names the
/// open mode answers.
final class DashboardRulesTests: XCTestCase {
    func testASlowPageIsToldOnceToReloadAndTheNewestUpdatesAreKept() async throws {
        let feed = LiveFeed()
        let (id, stream) = feed.subscribe(sweep: 1, buffer: 2)
        let (other, _) = feed.subscribe(sweep: 2, buffer: 2)
        for step in 1...5 { feed.publish(LiveUpdate(sweep: 1, job: 7, points: [CurvePoint(kind: .train, step: step, value: 1)])) }
        XCTAssertTrue(feed.takeOverflow(id), "3 of 5 updates dropped")
        XCTAssertFalse(feed.takeOverflow(id), "told once")
        XCTAssertFalse(feed.takeOverflow(other), "another sweep's page lost nothing")
        feed.close()
        var steps: [Int] = []
        for await item in stream { if case .update(let u) = item { steps += u.points.map(\.step) } }
        XCTAssertEqual(steps, [4, 5], "the newest kept; close ended the stream")
        let (_, late) = feed.subscribe(sweep: 1)
        for await _ in late { XCTFail("a stream opened after close ends at once") }
    }

    func testALoginSendsOnlyToAPathOfThisSite() {
        for next in ["/", "/sweeps/3", "/workers?x=1"] { XCTAssertEqual(Dashboard.sitePath(next), next) }
        for next in [nil, "", "//evil.example/", "/\\evil.example", "/\t/evil.example", "https://evil.example/", "sweeps/3", "/a\u{7F}b"] {
            XCTAssertEqual(Dashboard.sitePath(next), "/", "\(String(describing: next))")
        }
    }

    func testTheOpenModeAnswersOnlyLoopbackNames() {
        for host in ["localhost", "localhost:8080", "127.0.0.1", "127.0.0.1:9", "127.1.2.3:80", "[::1]:8080", "LOCALHOST"] {
            XCTAssertTrue(DashboardAccess.isLoopbackHost(host), host)
        }
        for host in [nil, "", "rebound.example", "127.0.0.1.rebound.example", "10.0.0.1:80", "[::2]:80", "localhost.example"] {
            XCTAssertFalse(DashboardAccess.isLoopbackHost(host), "\(String(describing: host))")
        }
    }
}
