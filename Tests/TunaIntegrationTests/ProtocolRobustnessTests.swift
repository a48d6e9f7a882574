import Crypto
import Foundation
import XCTest
import TunaCore
import TunaCoordinator
import TunaWire
import TunaWorker
#if canImport(Glibc)
import Glibc
import TunaRandom
#endif

/// Bad input of every kind against an in-process coordinator, while a real worker daemon
/// runs a sweep beside it: each gets a clear error, closes only its own connection, and
/// changes nothing else.
final class ProtocolRobustnessTests: XCTestCase {
    var dir: URL!
    var server: Task<Void, Error>!
    var port = 0
    let token = "s3cret-token"

    override func setUp() async throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tuna-proto-\(UUID().uuidString.prefix(8))")
        var config = CoordinatorConfig(listen: HostPort(host: "127.0.0.1", port: 0), dataDir: dir.appendingPathComponent("data"), token: token)
        config.policy.leaseMs = 5000
        config.maxFrame = 1 << 22
        config.connections.helloDeadlineSeconds = 1
        let s = try CoordinatorServer(config: config)
        let (ports, cont) = AsyncStream.makeStream(of: Int.self)
        server = Task { try await s.run { cont.yield($0) } }
        for await p in ports { port = p; break }
    }

    override func tearDown() async throws {
        server.cancel()
        try? FileManager.default.removeItem(at: dir)
    }

    var addr: HostPort { HostPort(host: "127.0.0.1", port: port) }

    func client(role: String = "client") async throws -> WireClient { try await WireClient.connect(addr, token: token, role: role) }

    func firstPush(_ c: WireClient) async -> Incoming? { for await m in c.pushes { return m }; return nil }

    func testTokenIsRequired() async throws {
        for bad in [nil, "wrong"] as [String?] {
            do {
                _ = try await WireClient.connect(addr, token: bad, role: "client")
                XCTFail("connected with token \(bad ?? "nil")")
            } catch let e as ErrorReply {
                XCTAssertEqual(e.code, .unauthorized)
            }
        }
        let ok = try await client()
        let v52 = try await ok.send(ListSweeps()).rows.count
        XCTAssertEqual(v52, 0)
        ok.close()
        XCTAssertThrowsError(try CoordinatorServer(config: CoordinatorConfig(listen: HostPort(host: "0.0.0.0", port: 0), dataDir: dir, token: nil))) {
            XCTAssert("\($0)".contains("token is required"), "\($0)")
        }
    }

    func testMalformedFramesCloseOnlyTheirConnection() async throws {
        let bystander = try await client()

        // Not JSON.
        let a = try await client()
        try await a.sendFrame(.json(Data("this is not json".utf8)))
        let ea = await firstPush(a)
        XCTAssertEqual(ea?.type, "error")
        XCTAssertEqual(try ea.map { try Envelope.decode(ErrorReply.self, from: $0.json, message: "error").code }, .badMessage)
        try await waitClosed(a)

        // Unknown message type: an error reply to that request, then the connection closes.
        let b = try await client()
        do { _ = try await b.requestRaw("frobnicate", Empty()).decode(Empty.self); XCTFail() } catch let e as ErrorReply {
            XCTAssertEqual(e.code, .unknownType); XCTAssert(e.message.contains("frobnicate"))
        }
        try await waitClosed(b)
        // A reply type sent as a request is not a request either.
        let r = try await client()
        do { _ = try await r.requestRaw("welcome", Empty()).decode(Empty.self); XCTFail() } catch let e as ErrorReply {
            XCTAssertEqual(e.code, .unknownType); XCTAssert(e.message.contains("is a reply, not a request"), e.message)
        }
        try await waitClosed(r)

        // A frame larger than the limit, refused from its length alone.
        let reply = try rawExchange(port: port, bytes: [0x7f, 0xff, 0xff, 0xff, 0x01, 0x7b])
        XCTAssert(reply.contains("exceeds the limit"), reply)
        // An unknown frame kind.
        XCTAssert(try rawExchange(port: port, bytes: [0, 0, 0, 2, 9, 0]).contains("unknown frame kind"))
        // Speaking before hello.
        let noHello = Envelope.encode("list_sweeps", id: 1, Empty())
        XCTAssert(try rawExchange(port: port, bytes: [0, 0, 0, UInt8(noHello.count + 1), 1] + Array(noHello)).contains("say hello first"))

        // A client may not act as a worker.
        let c = try await client()
        do { _ = try await c.send(JobDone(job: 1, attempt: 1)); XCTFail() } catch let e as ErrorReply {
            XCTAssertEqual(e.code, .unauthorized)
        }

        // Meanwhile the bystander's connection is untouched.
        let v93 = try await bystander.send(ListSweeps()).rows.count
        XCTAssertEqual(v93, 0)
        bystander.close()
    }

    /// Before its hello is accepted a connection may send only small frames, and it is closed
    /// if it says nothing for `helloDeadlineSeconds` (issue 13, finding 2: 64 unauthenticated
    /// connections each sending 15 MiB of a 16 MiB frame once took the coordinator to 1 GB).
    func testUnauthenticatedPeersGetSmallFramesAndADeadline() async throws {
        // 100 KiB announced before hello: refused from the length alone.
        let big = try rawExchange(port: port, bytes: [0, 1, 0x90, 0, 1, 0x7b])
        XCTAssert(big.contains("exceeds the limit of \(Frame.unauthenticatedMaxLength)"), big)
        // Silence: the coordinator closes the connection after the deadline (1 s here), well
        // before the socket's own 3 s receive timeout.
        let start = Date()
        XCTAssertEqual(try rawExchange(port: port, bytes: []), "")
        XCTAssertLessThan(Date().timeIntervalSince(start), 2.5)
        // After hello, frames up to the configured maximum: a 200 KB spec goes through.
        let c = try await client()
        defer { c.close() }
        let spec = "name: big\ntrainer: command\ncommand: [x]\n# " + String(repeating: "x", count: 200_000) + "\n"
        let s = try await c.send(Submit(spec: spec))
        XCTAssertEqual(s.jobs, 1)
    }

    func testBadSpecIsRefusedWholeWithFieldMessagesAndTheConnectionStaysUsable() async throws {
        let c = try await client()
        defer { c.close() }
        let yaml = "name: bad\ntrainer: native\nmodel: m\ndataset: {path: d.csv}\nlora: {rank: [8, -4]}\ntrain: {learning_rate: fast}"
        do { _ = try await c.send(Submit(spec: yaml)); XCTFail() } catch let e as ErrorReply {
            XCTAssertEqual(e.code, .invalidSpec)
            XCTAssert(e.message.contains("lora.rank: -4 is not a positive integer"), e.message)
            XCTAssert(e.message.contains("train.learning_rate: \"fast\" is not a number"), e.message)
        }
        let v106 = try await c.send(ListSweeps()).rows.count
        XCTAssertEqual(v106, 0, "nothing stored")
        do { _ = try await c.send(Submit(spec: "name: [unclosed")); XCTFail() } catch let e as ErrorReply {
            XCTAssertEqual(e.code, .invalidSpec)
        }
        do { _ = try await c.send(ResultsQuery(sweep: 42)); XCTFail() } catch let e as ErrorReply {
            XCTAssertEqual(e.code, .notFound)
        }
    }

    /// A fake worker that leases one job of a one-job sweep.
    func leaseOne(workerID: String = "fake-worker") async throws -> (WireClient, Lease) {
        let admin = try await client()
        _ = try await admin.send(Submit(spec: "name: up\ntrainer: command\ncommand: [x]"))
        admin.close()
        let w = try await register(workerID: workerID, running: [])
        let lease = try await w.send(JobRequest(free_gpus: [], trainers: ["command"]))
        return (w, lease)
    }

    func register(workerID: String, running: [AttemptRef]) async throws -> WireClient {
        let w = try await client(role: "worker")
        let caps = Capabilities(hostname: "test", trainers: ["command"], gpus: [], cpu_cores: 1, ram_gb: 1)
        _ = try await w.send(Register(worker_id: workerID, name: "fake", capabilities: caps, max_jobs: 1, running: running))
        return w
    }

    /// Worker ids name rows and files, names are logged: a path, a NUL or a newline is refused
    /// at registration (issue 13, finding 6), and the connection stays usable.
    func testWorkerIdsAndNamesAreChecked() async throws {
        let w = try await client(role: "worker")
        defer { w.close() }
        let caps = Capabilities(hostname: "test", trainers: ["command"], gpus: [], cpu_cores: 1, ram_gb: 1)
        for (id, name, expect) in [("../../etc/passwd", "ok", "worker id"), ("a\u{0}b", "ok", "worker id"),
                                   ("w-ok", "line\nforged: registered", "worker name"), ("w-ok", "", "worker name")] {
            do {
                _ = try await w.send(Register(worker_id: id, name: name, capabilities: caps, max_jobs: 1, running: []))
                XCTFail("registered \(id) / \(name)")
            } catch let e as ErrorReply {
                XCTAssertEqual(e.code, .badRequest)
                XCTAssert(e.message.hasPrefix(expect), e.message)
            }
        }
        let ok = try await w.send(Register(worker_id: "w-ok", name: "box 7 (H200)", capabilities: caps, max_jobs: 1, running: []))
        XCTAssertFalse(ok.quarantined)
    }

    func testArtifactNamesAndChecksumsAreChecked() async throws {
        let (w, lease) = try await leaseOne()
        defer { w.close() }
        let ref = AttemptRef(job: lease.job, attempt: lease.attempt)
        let bytes = Data((0..<5000).map { UInt8($0 % 251) })
        let digest = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
        for name in ["../evil", "a/../../b", "/etc/passwd", "", "x\\y", "a//b"] {
            do {
                _ = try await w.send(UploadBegin(job: ref.job, attempt: ref.attempt, artifact: ArtifactInfo(kind: "adapter", name: name, sha256: digest, size: 5000)))
                XCTFail("accepted \(name)")
            } catch let e as ErrorReply { XCTAssertEqual(e.code, .badArtifact, name) }
        }
        // A chunk whose bytes do not match its digest.
        let ready = try await w.send(UploadBegin(job: ref.job, attempt: ref.attempt, artifact: ArtifactInfo(kind: "adapter", name: "a.bin", sha256: digest, size: 5000)))
        do {
            _ = try await w.send(UploadChunk(upload: ready.upload, offset: 0, length: 5000, sha256: String(repeating: "0", count: 64)), binary: bytes)
            XCTFail()
        } catch let e as ErrorReply { XCTAssertEqual(e.code, .badChecksum) }
        // A whole file whose digest is not the declared one: refused at the end, nothing stored.
        let wrong = String(repeating: "a", count: 64)
        let r2 = try await w.send(UploadBegin(job: ref.job, attempt: ref.attempt, artifact: ArtifactInfo(kind: "adapter", name: "b.bin", sha256: wrong, size: 5000)))
        _ = try await w.send(UploadChunk(upload: r2.upload, offset: 0, length: 5000, sha256: digest), binary: bytes)
        do { _ = try await w.send(UploadEnd(upload: r2.upload)); XCTFail() } catch let e as ErrorReply {
            XCTAssertEqual(e.code, .badArtifact)
        }
        let admin = try await client(); defer { admin.close() }
        let v158 = try await admin.send(JobQuery(job: ref.job)).artifacts
        XCTAssertEqual(v158, [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("data/artifacts/aa/\(wrong)").path))
    }

    func testUploadResumesFromTheLastVerifiedOffsetAfterADroppedConnection() async throws {
        let (w, lease) = try await leaseOne()
        let ref = AttemptRef(job: lease.job, attempt: lease.attempt)
        let size = Frame.chunkSize * 2 + 12345
        var gen = SplitMix64(seed: 1)
        let bytes = Data((0..<size).map { _ in UInt8(truncatingIfNeeded: gen.next()) })
        let file = dir.appendingPathComponent("adapter_model.safetensors")
        try bytes.write(to: file)
        let info = try ArtifactTransfer.describe(file, name: "adapter_model.safetensors", kind: "adapter")

        // Send two chunks, then the connection drops.
        let ready = try await w.send(UploadBegin(job: ref.job, attempt: ref.attempt, artifact: info))
        XCTAssertEqual(ready.offset, 0)
        for i in 0..<2 {
            let chunk = bytes.subdata(in: i * Frame.chunkSize..<(i + 1) * Frame.chunkSize)
            let ack = try await w.send(UploadChunk(upload: ready.upload, offset: Int64(i * Frame.chunkSize), length: chunk.count,
                                                                       sha256: SHA256.hash(data: chunk).map { String(format: "%02x", $0) }.joined()),
                                          binary: chunk)
            XCTAssertEqual(ack.offset, Int64((i + 1) * Frame.chunkSize))
        }
        w.close()

        // The worker reconnects, re-attaches to its lease, and the upload resumes at 2 MiB.
        let w2 = try await register(workerID: "fake-worker", running: [ref])
        defer { w2.close() }
        let again = try await w2.send(UploadBegin(job: ref.job, attempt: ref.attempt, artifact: info))
        XCTAssertEqual(again.upload, ready.upload)
        XCTAssertEqual(again.offset, Int64(2 * Frame.chunkSize), "resumes from the last verified offset")
        try await ArtifactTransfer.upload(w2, ref: ref, file: file, info: info)
        _ = try await w2.send(JobDone(job: ref.job, attempt: ref.attempt))

        let admin = try await client(); defer { admin.close() }
        let d = try await admin.send(JobQuery(job: ref.job))
        XCTAssertEqual(d.job.status, .succeeded)
        XCTAssertEqual(d.job.adapter_sha256, info.sha256)
        let back = dir.appendingPathComponent("back.bin")
        try await ArtifactTransfer.download(admin, d.artifacts[0], to: back)
        XCTAssertEqual(try Data(contentsOf: back), bytes)
    }

    func testARealWorkerKeepsWorkingThroughAllThis() async throws {
        var wc = WorkerConfig(coordinator: addr, workDir: dir.appendingPathComponent("work"), token: token)
        wc.name = "real"
        let daemon = try WorkerDaemon(config: wc)
        let worker = Task { await daemon.run() }
        defer { worker.cancel() }
        let admin = try await client(); defer { admin.close() }
        let toy = Cluster.binDir().appendingPathComponent("ToyTrainer").path
        let s = try await admin.send(Submit(spec: "name: ok\ntrainer: command\ncommand: [\"\(toy)\"]\ni: [1, 2, 3]\nsteps: 20\nstep_ms: 20"))
        // Garbage from other connections while it runs.
        for _ in 0..<20 {
            _ = try? rawExchange(port: port, bytes: [0, 0, 0, 5, 1, 0x5b, 0x5d, 0x7b, 0x7d])
            _ = try? rawExchange(port: port, bytes: [0xff, 0xff, 0xff, 0xff])
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let rows = try await admin.sendRaw(ResultsQuery(sweep: s.sweep)).resultRows()
            if rows.allSatisfy({ $0.status == .succeeded }) { return }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        XCTFail("the sweep did not finish")
    }

    private func waitClosed(_ c: WireClient) async throws {
        for _ in 0..<50 where !c.isClosed { try await Task.sleep(nanoseconds: 20_000_000) }
        XCTAssertTrue(c.isClosed, "the offending connection is closed")
    }
}

/// Writes raw bytes to the coordinator and returns everything it sends back until it closes
/// the connection (or 3 seconds pass).
func rawExchange(port: Int, bytes: [UInt8]) throws -> String {
    guard let fd = loopbackSocket(port: port, timeoutMs: 3000) else { throw TunaError.io("cannot connect to 127.0.0.1:\(port)") }
    defer { close(fd) }
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, bytes.count, 0) }
    var out = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = recv(fd, &buf, buf.count, 0)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

/// A TCP connection to 127.0.0.1:`port` whose sends and receives give up after `timeoutMs`;
/// nil if it cannot connect. The caller closes it.
func loopbackSocket(port: Int, timeoutMs: Int) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard rc == 0 else { close(fd); return nil }
    var tv = timeval(tv_sec: timeoutMs / 1000, tv_usec: (timeoutMs % 1000) * 1000)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    return fd
}
