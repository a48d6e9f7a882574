import Foundation
import NIOSSL
import XCTest
import TunaCore
import TunaCoordinator
import TunaWire
import TunaWorker

/// TLS on the protocol (issue 13): the right CA connects (a worker runs a job through it); a
/// plaintext client, a wrong CA, an expired certificate, a missing client certificate are each
/// refused with a clear error; off loopback the coordinator will not serve plaintext unasked.
/// The certificates are made here with openssl.
final class TLSTests: XCTestCase {
    var dir: URL!
    var tasks: [Task<Void, Error>] = []

    override func setUpWithError() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl") else { throw XCTSkip("needs /usr/bin/openssl (apt-get install openssl)") }
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tuna-tls-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=Tuna test CA", "-days", "2"])
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "other.key", "-out", "other.pem", "-subj", "/CN=Another CA", "-days", "2"])
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\n".write(to: dir.appendingPathComponent("san.ext"), atomically: true, encoding: .utf8)
        try sign("server", days: "2", ext: "san.ext")
        try sign("expired", days: "-1", ext: "san.ext")
        try sign("client", days: "2", ext: nil)
    }

    override func tearDown() {
        for t in tasks { t.cancel() }
        try? FileManager.default.removeItem(at: dir)
    }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    func openssl(_ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = args
        p.currentDirectoryURL = dir
        p.standardOutput = FileHandle.nullDevice
        let err = Pipe()
        p.standardError = err
        try p.run()
        let said = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TunaError.io("openssl \(args.joined(separator: " ")): \(said)") }
    }

    /// A key and a certificate for `name`, signed by ca.pem.
    func sign(_ name: String, days: String, ext: String?) throws {
        try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(name)"])
        try openssl(["x509", "-req", "-in", "\(name).csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "\(name).pem", "-days", days]
                    + (ext.map { ["-extfile", $0] } ?? []))
    }

    func start(_ tls: TLS.Server?, listen host: String = "127.0.0.1", plaintext: Bool = false) async throws -> HostPort {
        var config = CoordinatorConfig(listen: HostPort(host: host, port: 0), dataDir: dir.appendingPathComponent("data-\(tasks.count)"), token: "tls-test-token")
        config.tls = tls
        config.insecurePlaintext = plaintext
        let s = try CoordinatorServer(config: config)
        let (ports, cont) = AsyncStream.makeStream(of: Int.self)
        tasks.append(Task { try await s.run { cont.yield($0) } })
        for await p in ports { return HostPort(host: "127.0.0.1", port: p) }
        throw TunaError.io("no port")
    }

    func connect(_ addr: HostPort, ca: String?, cert: String? = nil) async throws -> WireClient {
        let tls = try ca.map { try TLS.Client(ca: path($0), certificate: cert.map { path("\($0).pem") }, key: cert.map { path("\($0).key") }).context() }
        return try await WireClient.connect(addr, token: "tls-test-token", role: "client", tls: tls)
    }

    func assertRefused(_ addr: HostPort, ca: String?, cert: String? = nil, saying: String, line: UInt = #line) async {
        do {
            let c = try await connect(addr, ca: ca, cert: cert)
            c.close()
            XCTFail("connected", line: line)
        } catch {
            XCTAssert("\(error)".contains(saying), "\(error)", line: line)
        }
    }

    func testTheRightCAConnectsAndEverythingElseIsRefusedClearly() async throws {
        let addr = try await start(TLS.Server(certificate: path("server.pem"), key: path("server.key")))
        let c = try await connect(addr, ca: "ca.pem")
        let sweeps = try await c.send(ListSweeps()).rows
        XCTAssertEqual(sweeps.count, 0)
        let s = try await c.send(Submit(spec: "name: t\ntrainer: command\ncommand: [\"\(Cluster.binDir().appendingPathComponent("ToyTrainer").path)\"]\nsteps: 3"))
        // A worker over TLS runs the job.
        var wc = WorkerConfig(coordinator: addr, workDir: dir.appendingPathComponent("work"), token: "tls-test-token")
        wc.tls = try TLS.Client(ca: path("ca.pem")).context()
        let daemon = try WorkerDaemon(config: wc)
        let worker = Task { await daemon.run() }
        defer { worker.cancel() }
        let deadline = Date().addingTimeInterval(30)
        var status: JobStatus?
        while Date() < deadline {
            status = try await c.sendRaw(ResultsQuery(sweep: s.sweep)).resultRows().first?.status
            if status == .succeeded { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        XCTAssertEqual(status, .succeeded)
        c.close()

        await assertRefused(addr, ca: nil, saying: "closed the connection before answering hello (if it serves TLS, pass --tls-ca)")
        await assertRefused(addr, ca: "other.pem", saying: "not signed by the CA given with --tls-ca")

        let expired = try await start(TLS.Server(certificate: path("expired.pem"), key: path("expired.key")))
        await assertRefused(expired, ca: "ca.pem", saying: "has expired")

        let plain = try await start(nil)
        await assertRefused(plain, ca: "ca.pem", saying: "did not answer in TLS (is it serving plaintext? then drop --tls-ca)")
    }

    func testClientCertificatesWhenRequired() async throws {
        let addr = try await start(TLS.Server(certificate: path("server.pem"), key: path("server.key"), clientCA: path("ca.pem")))
        await assertRefused(addr, ca: "ca.pem", saying: "TLS handshake with the coordinator at \(addr) failed")
        let c = try await connect(addr, ca: "ca.pem", cert: "client")
        let sweeps = try await c.send(ListSweeps()).rows
        XCTAssertEqual(sweeps.count, 0)
        c.close()
    }

    /// The flags, end to end: `tuna coordinator --tls-cert/--tls-key`, a `tuna worker --tls-ca`
    /// that runs a job, and the CLI with and without `--tls-ca`.
    func testTheCommandsSpeakTLS() async throws {
        let cluster = try Cluster()
        defer { cluster.shutdown() }
        cluster.extraCoordinatorArgs = ["--tls-cert", path("server.pem"), "--tls-key", path("server.key")]
        try cluster.startCoordinator()
        try cluster.startWorker("tls", extra: ["--tls-ca", path("ca.pem")])
        let spec = cluster.dir.appendingPathComponent("s.yaml")
        try cluster.toySpec("steps: 3").write(to: spec, atomically: true, encoding: .utf8)
        let submitted = try cluster.cli(["submit", spec.path, "--tls-ca", path("ca.pem")])
        XCTAssertEqual(submitted.status, 0, submitted.out)
        let watched = try cluster.cli(["watch", "--interval", "0.2", "--tls-ca", path("ca.pem")])
        XCTAssertEqual(watched.status, 0, watched.out)
        XCTAssert(watched.out.contains("1/1 succeeded"), watched.out)
        let plain = try cluster.cli(["sweeps"])
        XCTAssertEqual(plain.status, 1, plain.out)
        XCTAssert(plain.out.contains("if it serves TLS, pass --tls-ca"), plain.out)
    }

    func testOffLoopbackPlaintextNeedsTheFlagAndBadFilesAreNamed() async throws {
        XCTAssertThrowsError(try CoordinatorServer(config: CoordinatorConfig(listen: HostPort(host: "0.0.0.0", port: 0), dataDir: dir, token: "t"))) {
            XCTAssert("\($0)".contains("off loopback the coordinator serves TLS: pass --tls-cert and --tls-key (or, on a network you trust, --insecure-plaintext)"), "\($0)")
        }
        _ = try await start(nil, listen: "0.0.0.0", plaintext: true)
        XCTAssertThrowsError(try TLS.Server(certificate: path("nope.pem"), key: path("server.key")).context()) {
            XCTAssert("\($0)".contains("--tls-cert \(path("nope.pem")): not a readable PEM certificate"), "\($0)")
        }
        XCTAssertThrowsError(try TLS.Client(ca: path("server.key")).context()) { XCTAssert("\($0)".contains("--tls-ca"), "\($0)") }
    }
}
