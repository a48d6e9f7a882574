import Foundation
import NIOCore
import NIOPosix
import XCTest
import TunaCore
import TunaCoordinator
import TunaWire
import TunaWorker

/// Connection hygiene (issue 13, findings 2 and 3): silent peers are noticed within seconds on
/// both sides, a lease sent into a dead connection is not a failure, connections are capped
/// with a clear refusal, and a client does not hang on a coordinator that never answers.
final class LivenessTests: XCTestCase {
    var dir: URL!
    var servers: [Task<Void, Error>] = []

    override func setUp() {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tuna-live-\(UUID().uuidString.prefix(8))")
    }

    override func tearDown() {
        for s in servers { s.cancel() }
        try? FileManager.default.removeItem(at: dir)
    }

    /// An in-process coordinator with 4 s leases (so a 2 s silence, a ping every 500 ms).
    func startCoordinator(_ tweak: (inout CoordinatorConfig) -> Void = { _ in }) async throws -> HostPort {
        var config = CoordinatorConfig(listen: HostPort(host: "127.0.0.1", port: 0), dataDir: dir.appendingPathComponent("data-\(servers.count)"), token: nil)
        config.policy.leaseMs = 4000
        config.policy.backoffBaseMs = 100
        tweak(&config)
        let s = try CoordinatorServer(config: config)
        let (ports, cont) = AsyncStream.makeStream(of: Int.self)
        servers.append(Task { try await s.run { cont.yield($0) } })
        for await p in ports { return HostPort(host: "127.0.0.1", port: p) }
        throw TunaError.io("coordinator did not start")
    }

    func worker(_ name: String, via addr: HostPort) throws -> Task<Void, Never> {
        var wc = WorkerConfig(coordinator: addr, workDir: dir.appendingPathComponent("work-\(name)"), token: nil)
        wc.name = name
        let daemon = try WorkerDaemon(config: wc)
        return Task { await daemon.run() }
    }

    func connected(_ admin: WireClient, _ name: String) async throws -> Bool {
        try await admin.send(ListWorkers()).rows.first { $0.name == name }?.connected ?? false
    }

    /// Waits until `condition` holds, up to `seconds`; returns how long it took.
    @discardableResult
    func within(_ seconds: Double, _ what: String, _ condition: () async throws -> Bool) async throws -> Double {
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            if try await condition() { return Date().timeIntervalSince(start) }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        XCTFail("not within \(seconds) s: \(what)")
        return seconds
    }

    /// The fault campaign's black hole: the network between a worker and the coordinator drops
    /// every packet without a reset. Both sides notice within the 2 s silence (before, the
    /// coordinator showed the worker connected and leased it a job that was then counted as a
    /// failure). A job leased in the instant before the coordinator noticed never reached the
    /// worker: it comes back to the queue as `returned`, not `lost`, and counts as no failure.
    func testABlackHoledWorkerIsNoticedWithinSecondsAndALeaseSentIntoTheHoleIsNoFailure() async throws {
        let addr = try await startCoordinator()
        let proxy = try await BlackHoleProxy(to: addr)
        defer { proxy.close() }
        let w = try worker("holed", via: proxy.address)
        defer { w.cancel() }
        let admin = try await WireClient.connect(addr, token: nil, role: "client")
        defer { admin.close() }
        try await within(10, "the worker registers") { try await connected(admin, "holed") }
        try await Task.sleep(nanoseconds: 300_000_000)   // its job request is parked

        proxy.blackHoled = true
        let before = proxy.accepted
        let toy = Cluster.binDir().appendingPathComponent("ToyTrainer").path
        // Leased at once to the parked request, which is already in the hole.
        let a = try await admin.send(Submit(spec: "name: into-the-hole\ntrainer: command\ncommand: [\"\(toy)\"]\nsteps: 5\nstep_ms: 10"))
        let noticed = try await within(4, "the coordinator drops the silent worker") { !(try await connected(admin, "holed")) }
        XCTAssertLessThan(noticed, 3.5, "noticed within the 2 s silence (plus the 250 ms check)")
        try await within(6, "the worker gives up on the dead connection and dials again") { proxy.accepted > before }

        // Submitted while the worker is unreachable: not leased to it.
        let b = try await admin.send(Submit(spec: "name: while-holed\ntrainer: command\ncommand: [\"\(toy)\"]\nsteps: 5\nstep_ms: 10"))
        try await Task.sleep(nanoseconds: 1_000_000_000)
        let waitingB = try await admin.sendRaw(ResultsQuery(sweep: b.sweep)).resultRows()
        XCTAssertEqual(waitingB.map(\.status), [.queued])
        XCTAssertEqual(waitingB.map(\.attempts), [0])

        proxy.blackHoled = false
        for sweep in [a.sweep, b.sweep] {
            try await within(30, "sweep \(sweep) succeeds once the network heals") {
                try await admin.sendRaw(ResultsQuery(sweep: sweep)).resultRows().allSatisfy { $0.status == .succeeded }
            }
        }
        let jobA = try await admin.sendRaw(ResultsQuery(sweep: a.sweep)).resultRows()[0].id
        let detail = try await admin.send(JobQuery(job: jobA))
        XCTAssertEqual(detail.attempts.map(\.state), ["returned", "succeeded"], "the lease into the hole came back unfailed")
        XCTAssert(detail.attempts[0].error?.contains("never reached the worker") ?? false, detail.attempts[0].error ?? "")
        let row = try await admin.send(ListWorkers()).rows.first { $0.name == "holed" }
        XCTAssertEqual(row?.consecutive_failures, 0)
        XCTAssertEqual(row?.quarantined, false)
    }

    /// A worker that stops saying anything (its process is stopped, say) is disconnected after
    /// the silence; one that pings stays; an idle client goes after `clientIdleSeconds`.
    func testSilentPeersAreDisconnectedAndPingingOnesStay() async throws {
        let addr = try await startCoordinator { $0.connections.clientIdleSeconds = 1 }
        let caps = Capabilities(hostname: "h", trainers: ["command"], gpus: [], cpu_cores: 1, ram_gb: 1)
        let mute = try await WireClient.connect(addr, token: nil, role: "worker")
        let reg = try await mute.send(Register(worker_id: "mute", name: "mute", capabilities: caps, max_jobs: 1, running: []))
        XCTAssertEqual(reg.silence_ms, 2000)
        XCTAssertEqual(reg.ping_ms, 500)
        let chatty = try await WireClient.connect(addr, token: nil, role: "worker")
        _ = try await chatty.send(Register(worker_id: "chatty", name: "chatty", capabilities: caps, max_jobs: 1, running: []))
        let pinger = Task {
            while !Task.isCancelled {
                _ = try? await chatty.send(Ping(), timeout: .seconds(2), "ping")
                try? await Task.sleep(nanoseconds: 500_000_000)
            }
        }
        defer { pinger.cancel(); chatty.close() }
        let idle = try await WireClient.connect(addr, token: nil, role: "client")

        let mutedFor = try await within(4, "the mute worker is disconnected") { mute.isClosed }
        XCTAssertGreaterThan(mutedFor, 1.5, "not before its 2 s silence")
        try await within(3, "the idle client is disconnected") { idle.isClosed }
        try await Task.sleep(nanoseconds: 1_500_000_000)
        XCTAssertFalse(chatty.isClosed, "a worker that pings keeps its connection")
        let admin = try await WireClient.connect(addr, token: nil, role: "client")
        defer { admin.close() }
        let rows = try await admin.send(ListWorkers()).rows
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: rows.map { ($0.name, $0.connected) }), ["mute": false, "chatty": true])
    }

    /// Connections over the caps get a `too_many_connections` reply naming the cap (before, at a
    /// 256 file-descriptor limit, the CLI hung and the coordinator said nothing).
    func testConnectionsOverTheCapsAreRefusedWithAReply() async throws {
        let perPeer = try await startCoordinator { $0.connections.maxPerPeer = 3 }
        var held = [WireClient]()
        for _ in 0..<3 { held.append(try await WireClient.connect(perPeer, token: nil, role: "client")) }
        try await assertRefused(perPeer, saying: "127.0.0.1 already holds the maximum of 3 connections per address")
        held.removeLast().close()
        try await within(2, "a freed slot admits a new connection") {
            guard let c = try? await WireClient.connect(perPeer, token: nil, role: "client") else { return false }
            held.append(c)
            return true
        }
        for c in held { c.close() }

        let total = try await startCoordinator { $0.connections.maxConnections = 2 }
        let x = try await WireClient.connect(total, token: nil, role: "client")
        let y = try await WireClient.connect(total, token: nil, role: "client")
        defer { x.close(); y.close() }
        try await assertRefused(total, saying: "the coordinator holds its maximum of 2 connections")
        let sweeps = try await x.send(ListSweeps()).rows.count
        XCTAssertEqual(sweeps, 0, "the admitted ones are unaffected")
    }

    func assertRefused(_ addr: HostPort, saying message: String, line: UInt = #line) async throws {
        do {
            _ = try await WireClient.connect(addr, token: nil, role: "client")
            XCTFail("a connection over the cap was admitted", line: line)
        } catch let e as ErrorReply {
            XCTAssertEqual(e.code, .tooManyConnections, line: line)
            XCTAssert(e.message.contains(message), e.message, line: line)
        }
    }

    /// A coordinator that accepts the connection and never answers (its accept queue when out
    /// of file descriptors looks just like this to a client): the CLI stops with one line.
    func testAClientGivesUpOnACoordinatorThatNeverAnswersHello() async throws {
        let mute = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { $0.eventLoop.makeSucceededVoidFuture() }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { mute.close(promise: nil) }
        let addr = HostPort(host: "127.0.0.1", port: mute.localAddress?.port ?? 0)
        let start = Date()
        do {
            _ = try await WireClient.connect(addr, hello: Hello(token: nil, role: "client"), helloTimeout: .seconds(1))
            XCTFail("connected to a coordinator that never answered")
        } catch let e as WireError {
            XCTAssert(e.description.contains("accepted the connection but did not answer hello"), e.description)
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 3)
    }
}
