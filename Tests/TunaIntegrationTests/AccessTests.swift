import Crypto
import Foundation
import XCTest
import TunaCore
import TunaCoordinator
import TunaWire

/// Role tokens (issue 13): each role refused what it may not do, with `forbidden` and the
/// connection kept; `submit` tokens own their sweeps; worker tokens download only their own
/// jobs' artifacts; the audit log names who did what; SIGHUP rereads the tokens file.
final class AccessTests: XCTestCase {
    var dir: URL!
    var server: CoordinatorServer!
    var task: Task<Void, Error>!
    var addr = HostPort(host: "127.0.0.1", port: 0)
    let tokens = ["alice": "admin-token-aaaaaaaa", "bob": "submit-token-bbbbbbb", "carol": "submit-token-ccccccc",
                  "dash": "read-token-dddddddddd", "box": "worker-token-eeeeeee", "box2": "worker-token-fffffff"]
    var tokensFile: URL { dir.appendingPathComponent("tokens") }

    override func setUp() async throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tuna-access-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try """
            # ROLE  NAME   TOKEN
            admin   alice  \(tokens["alice"]!)
            submit  bob    \(tokens["bob"]!)
            submit  carol  \(tokens["carol"]!)   # a second user
            read    dash   \(tokens["dash"]!)
            worker  box    \(tokens["box"]!)
            worker  box2   \(tokens["box2"]!)
            """.write(to: tokensFile, atomically: true, encoding: .utf8)
        var config = CoordinatorConfig(listen: HostPort(host: "127.0.0.1", port: 0), dataDir: dir.appendingPathComponent("data"), token: nil)
        config.tokensFile = tokensFile
        server = try CoordinatorServer(config: config)
        let (ports, cont) = AsyncStream.makeStream(of: Int.self)
        let s = server!
        task = Task { try await s.run { cont.yield($0) } }
        for await p in ports { addr.port = p; break }
    }

    override func tearDown() {
        task.cancel()
        try? FileManager.default.removeItem(at: dir)
    }

    func connect(_ who: String, as kind: String = "client") async throws -> WireClient {
        try await WireClient.connect(addr, token: tokens[who], role: kind)
    }

    func assertForbidden<R: Request>(_ c: WireClient, _ request: R, saying: String, line: UInt = #line) async {
        do { _ = try await c.send(request); XCTFail("\(R.type) was allowed", line: line) } catch let e as ErrorReply {
            XCTAssertEqual(e.code, .forbidden, e.message, line: line)
            XCTAssert(e.message.contains(saying), e.message, line: line)
        } catch { XCTFail("\(error)", line: line) }
        XCTAssertFalse(c.isClosed, "a forbidden request keeps the connection", line: line)
    }

    func testEachRoleIsRefusedWhatItMayNotDo() async throws {
        let spec = "name: s\ntrainer: command\ncommand: [x]\ni: [1, 2]"
        let bob = try await connect("bob"), carol = try await connect("carol"), dash = try await connect("dash"), alice = try await connect("alice")
        defer { [bob, carol, dash, alice].forEach { $0.close() } }

        // read: reads, and nothing else.
        let none = try await dash.send(ListSweeps()).rows
        XCTAssertEqual(none.count, 0)
        await assertForbidden(dash, Submit(spec: spec), saying: "`submit` is not allowed with a read token (dash)")
        await assertForbidden(dash, Unquarantine(worker: "box"), saying: "not allowed with a read token")
        await assertForbidden(dash, AuditQuery(), saying: "not allowed with a read token")

        // submit: its own sweeps only.
        let mine = try await bob.send(Submit(spec: spec))
        let theirs = try await carol.send(Submit(spec: spec))
        await assertForbidden(bob, CancelRequest(sweep: theirs.sweep), saying: "sweep \(theirs.sweep) was submitted by carol, not bob")
        await assertForbidden(bob, RetryRequest(sweep: theirs.sweep), saying: "submitted by carol")
        let theirJob = try await bob.sendRaw(ResultsQuery(sweep: theirs.sweep)).resultRows()[0].id
        await assertForbidden(bob, CancelRequest(job: theirJob), saying: "job \(theirJob) was submitted by carol")
        await assertForbidden(bob, Unquarantine(worker: "box"), saying: "not allowed with a submit token (bob)")
        await assertForbidden(bob, AuditQuery(), saying: "not allowed with a submit token")
        let cancelled = try await bob.send(CancelRequest(sweep: mine.sweep)).count
        XCTAssertEqual(cancelled, 2)
        let retried = try await bob.send(RetryRequest(sweep: mine.sweep)).count
        XCTAssertEqual(retried, 2)

        // Clients cannot act as workers, and workers cannot act as clients.
        for (who, kind) in [("bob", "worker"), ("dash", "worker"), ("box", "client")] {
            do { _ = try await connect(who, as: kind); XCTFail("\(who) connected as a \(kind)") } catch let e as ErrorReply {
                XCTAssertEqual(e.code, .unauthorized)
                XCTAssert(e.message.contains("cannot connect as a \(kind)"), e.message)
            }
        }

        // admin: anyone's sweep; and the audit log says who did what.
        let adminCancelled = try await alice.send(CancelRequest(sweep: theirs.sweep)).count
        XCTAssertEqual(adminCancelled, 2)
        let log = try await alice.send(AuditQuery()).rows
        XCTAssertEqual(log.map { "\($0.who) \($0.role) \($0.action) \($0.target)" }, [
            "bob submit submit sweep \(mine.sweep)", "carol submit submit sweep \(theirs.sweep)",
            "bob submit cancel sweep \(mine.sweep)", "bob submit retry sweep \(mine.sweep)", "alice admin cancel sweep \(theirs.sweep)",
        ])
        XCTAssertEqual(log.map(\.detail), ["s: 2 jobs", "s: 2 jobs", "2 jobs cancelled", "2 jobs requeued", "2 jobs cancelled"])
    }

    /// A worker token runs jobs and downloads the checkpoints of the jobs it holds, not others'.
    func testAWorkerTokenDownloadsOnlyItsOwnJobsArtifacts() async throws {
        let bob = try await connect("bob")
        defer { bob.close() }
        _ = try await bob.send(Submit(spec: "name: s\ntrainer: command\ncommand: [x]"))
        let caps = Capabilities(hostname: "h", trainers: ["command"], gpus: [], cpu_cores: 1, ram_gb: 1)
        let box = try await connect("box", as: "worker"), box2 = try await connect("box2", as: "worker")
        defer { box.close(); box2.close() }
        _ = try await box.send(Register(worker_id: "box", name: "box", capabilities: caps, max_jobs: 1, running: []))
        _ = try await box2.send(Register(worker_id: "box2", name: "box2", capabilities: caps, max_jobs: 1, running: []))
        await assertForbidden(box, Submit(spec: "name: t\ntrainer: command\ncommand: [x]"), saying: "not allowed with a worker token (box)")
        await assertForbidden(box, ListSweeps(), saying: "not allowed with a worker token")
        let lease = try await box.send(JobRequest(free_gpus: [], trainers: ["command"]))
        let ref = AttemptRef(job: lease.job, attempt: lease.attempt)
        let file = dir.appendingPathComponent("step.txt")
        try Data("7\n".utf8).write(to: file)
        let info = try ArtifactTransfer.describe(file, name: "step.txt", kind: "checkpoint")
        try await ArtifactTransfer.upload(box, ref: ref, file: file, info: info)
        let own = try await box.sendRaw(ReadArtifact(sha256: info.sha256, offset: 0, length: 100)).decode(ArtifactChunk.self)
        XCTAssertEqual(own.size, 2)
        await assertForbidden(box2, ReadArtifact(sha256: info.sha256, offset: 0, length: 100), saying: "only the artifacts of the jobs it holds")
        let reader = try await connect("dash")
        defer { reader.close() }
        let read = try await reader.sendRaw(ReadArtifact(sha256: info.sha256, offset: 0, length: 100)).decode(ArtifactChunk.self)
        XCTAssertEqual(read.size, 2, "a read token downloads any artifact")
    }

    /// SIGHUP (here its handler) rereads the file: a removed token stops working, a new one
    /// works, and a broken file keeps the tokens in use.
    func testReloadingTheTokensFile() async throws {
        try "admin alice \(tokens["alice"]!)\nread newcomer new-read-token-12345\n".write(to: tokensFile, atomically: true, encoding: .utf8)
        server.reloadTokens()
        do { _ = try await connect("bob"); XCTFail("a removed token still works") } catch let e as ErrorReply { XCTAssertEqual(e.code, .unauthorized) }
        let newcomer = try await WireClient.connect(addr, token: "new-read-token-12345", role: "client")
        newcomer.close()
        try "admin alice short\n".write(to: tokensFile, atomically: true, encoding: .utf8)
        server.reloadTokens()
        let still = try await WireClient.connect(addr, token: "new-read-token-12345", role: "client")
        still.close()
    }

    /// The real process: `kill -HUP` makes `tuna coordinator --tokens` reread its file, and
    /// `tuna audit` shows the log to an admin token.
    func testSIGHUPRereadsTheTokensFileOfARealCoordinator() async throws {
        let cluster = try Cluster()
        defer { cluster.shutdown() }
        let file = cluster.dir.appendingPathComponent("tokens")
        try "admin alice \(tokens["alice"]!)\n".write(to: file, atomically: true, encoding: .utf8)
        cluster.extraCoordinatorArgs = ["--tokens", file.path]
        try cluster.startCoordinator()
        let aliceFile = cluster.dir.appendingPathComponent("alice")
        try tokens["alice"]!.write(to: aliceFile, atomically: true, encoding: .utf8)
        try "admin alice \(tokens["alice"]!)\nsubmit bob \(tokens["bob"]!)\n".write(to: file, atomically: true, encoding: .utf8)
        let pid = try XCTUnwrap(cluster.coordinator?.processIdentifier)
        kill(pid, SIGHUP)
        let bobAddr = HostPort(host: "127.0.0.1", port: cluster.port)
        try await cluster.waitUntil("bob's new token works", timeout: 10) {
            guard let c = try? await WireClient.connect(bobAddr, token: self.tokens["bob"], role: "client") else { return false }
            _ = try await c.send(Submit(spec: "name: by-bob\ntrainer: command\ncommand: [x]"))
            c.close()
            return true
        }
        XCTAssert(cluster.log("coordinator.log").contains("SIGHUP: reread"), cluster.log("coordinator.log"))
        let audit = try cluster.cli(["audit", "--token-file", aliceFile.path])
        XCTAssertEqual(audit.status, 0, audit.out)
        XCTAssert(audit.out.contains("bob") && audit.out.contains("submit") && audit.out.contains("sweep 1"), audit.out)
    }

    /// A loopback coordinator given no token makes one for its user: that user's CLI finds it,
    /// a peer without it (another user of the box) is refused, and it goes when the coordinator does.
    func testALoopbackCoordinatorWithNoTokenMakesOneForItsUserOnly() async throws {
        let cluster = try Cluster()
        defer { cluster.shutdown() }
        try cluster.startCoordinator()
        let file = try XCTUnwrap(LocalToken.url(port: cluster.port))
        let mode = try FileManager.default.attributesOfItem(atPath: file.path)[.posixPermissions] as? NSNumber
        XCTAssertEqual(mode?.intValue, 0o600)
        XCTAssertEqual(try cluster.cli(["sweeps"]).status, 0, "this user's CLI reads the token")
        let stranger = Process()   // another user: another HOME, so no token file
        stranger.executableURL = cluster.bin.appendingPathComponent("tuna")
        stranger.arguments = ["sweeps", "--coordinator", cluster.address]
        stranger.environment = ["HOME": cluster.dir.appendingPathComponent("stranger").path, "PATH": "/usr/bin:/bin"]
        let out = Pipe()
        stranger.standardError = out
        stranger.standardOutput = out
        try stranger.run()
        let said = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        stranger.waitUntilExit()
        XCTAssertEqual(stranger.terminationStatus, 1, said)
        XCTAssert(said.contains("wrong or missing token"), said)
        do { _ = try await WireClient.connect(HostPort(host: "127.0.0.1", port: cluster.port), token: nil, role: "client"); XCTFail("no token accepted") }
        catch let e as ErrorReply { XCTAssertEqual(e.code, .unauthorized) }
        let coordinator = try XCTUnwrap(cluster.coordinator)
        coordinator.terminate()
        coordinator.waitUntilExit()
        XCTAssertFalse(FileManager.default.fileExists(atPath: file.path), "the token goes with the coordinator")
    }

    func testTokensFileProblemsAreNamedByLine() {
        XCTAssertThrowsError(try TokenTable.parse("admin alice 0123456789abcdef\nroot bob 0123456789abcdef0\nread carol short\nread ../x 0123456789abcdef1\nread dup 0123456789abcdef\n", file: "t")) {
            let m = "\($0)"
            XCTAssert(m.contains("line 2: role `root` is not one of admin, submit, read, worker"), m)
            XCTAssert(m.contains("line 3: the token is shorter than 16 characters"), m)
            XCTAssert(m.contains("line 4: name"), m)
            XCTAssert(m.contains("line 5: this token is already listed"), m)
        }
        XCTAssertThrowsError(try TokenTable.parse("# nothing\n", file: "t")) { XCTAssert("\($0)".contains("lists no token")) }
    }
}
