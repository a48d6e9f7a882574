import Crypto
import Foundation
import XCTest
import TunaCore
import TunaCoordinator
import TunaWire

/// `tuna gc` and the artifact quotas (issue 13), with a scripted worker so that every attempt's
/// uploads are known: what retention keeps (results, what a job would resume from, running
/// work), what it removes (failed attempts' and superseded checkpoints, succeeded jobs'
/// checkpoints, abandoned uploads), that a content shared with a kept artifact stays, and that
/// a dry run removes nothing.
final class RetentionTests: XCTestCase {
    var dir: URL!
    var task: Task<Void, Error>!
    var addr = HostPort(host: "127.0.0.1", port: 0)

    func start(_ tweak: (inout CoordinatorConfig) -> Void = { _ in }) async throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tuna-gc-\(UUID().uuidString.prefix(8))")
        var config = CoordinatorConfig(listen: HostPort(host: "127.0.0.1", port: 0), dataDir: dir.appendingPathComponent("data"), token: nil)
        config.policy.backoffBaseMs = 100
        tweak(&config)
        let s = try CoordinatorServer(config: config)
        let (ports, cont) = AsyncStream.makeStream(of: Int.self)
        task = Task { try await s.run { cont.yield($0) } }
        for await p in ports { addr.port = p; break }
    }

    override func tearDown() {
        task?.cancel()
        if let dir { try? FileManager.default.removeItem(at: dir) }
    }

    func worker() async throws -> WireClient {
        let w = try await WireClient.connect(addr, token: nil, role: "worker")
        let caps = Capabilities(hostname: "h", trainers: ["command"], gpus: [], cpu_cores: 1, ram_gb: 1)
        _ = try await w.send(Register(worker_id: "scripted", name: "scripted", capabilities: caps, max_jobs: 1, running: []))
        return w
    }

    /// Uploads `text` as artifact `name` of `kind` for the attempt; returns its description.
    @discardableResult
    func upload(_ w: WireClient, _ lease: Lease, _ kind: String, _ name: String, _ text: String) async throws -> ArtifactInfo {
        let file = dir.appendingPathComponent("up-\(UUID().uuidString.prefix(6))")
        try Data(text.utf8).write(to: file)
        let info = try ArtifactTransfer.describe(file, name: name, kind: kind)
        try await ArtifactTransfer.upload(w, ref: AttemptRef(job: lease.job, attempt: lease.attempt), file: file, info: info)
        return info
    }

    func stored(_ a: ArtifactInfo) -> Bool {
        FileManager.default.fileExists(atPath: dir.appendingPathComponent("data/artifacts/\(a.sha256.prefix(2))/\(a.sha256)").path)
    }

    func testGCKeepsResultsAndResumesAndRemovesTheRest() async throws {
        try await start()
        let admin = try await WireClient.connect(addr, token: nil, role: "client")
        defer { admin.close() }
        _ = try await admin.send(Submit(spec: "name: r\ntrainer: command\ncommand: [x]\ni: [1, 2, 3]"))
        let w = try await worker()
        defer { w.close() }
        let cpu = JobRequest(free_gpus: [], trainers: ["command"])

        // Job 1 succeeds: its adapter is a result; its checkpoint is not needed any more.
        let l1 = try await w.send(cpu)
        let c1 = try await upload(w, l1, "checkpoint", "step.txt", "job 1 step 5")
        let a1 = try await upload(w, l1, "adapter", "adapter_model.safetensors", "job 1 adapter")
        _ = try await w.send(JobDone(job: l1.job, attempt: l1.attempt))
        // Job 2 fails twice: attempt 1's checkpoint is superseded by attempt 2's, and attempt 2
        // left an upload half done.
        let l2a = try await w.send(cpu)
        let c2a = try await upload(w, l2a, "checkpoint", "step.txt", "shared content")
        _ = try await w.send(JobFailed(job: l2a.job, attempt: l2a.attempt, reason: "boom", returned: false))
        let l3 = try await w.send(cpu)                      // job 3 first: job 2 is in its retry backoff
        XCTAssertEqual(l3.job, 3)
        let c3 = try await upload(w, l3, "checkpoint", "step.txt", "shared content")   // the same bytes as c2a
        try await Task.sleep(nanoseconds: 300_000_000)      // job 2's backoff (100 ms) ends
        let l2b = try await w.send(cpu)
        XCTAssertEqual(l2b.job, 2)
        XCTAssertEqual(l2b.resume.map(\.sha256), [c2a.sha256])
        let c2b = try await upload(w, l2b, "checkpoint", "step.txt", "job 2 attempt 2")
        let partial = String(repeating: "p", count: Frame.chunkSize + 10)
        let info = ArtifactInfo(kind: "output", name: "big.bin", sha256: SHA256.hash(data: Data(partial.utf8)).hex, size: Int64(partial.utf8.count))
        let ready = try await w.send(UploadBegin(job: l2b.job, attempt: l2b.attempt, artifact: info))
        let chunk = Data(partial.utf8.prefix(Frame.chunkSize))
        _ = try await w.send(UploadChunk(upload: ready.upload, offset: 0, length: chunk.count, sha256: SHA256.hash(data: chunk).hex), binary: chunk)
        _ = try await w.send(JobFailed(job: l2b.job, attempt: l2b.attempt, reason: "boom again", returned: false))

        // A dry run: counts, removes nothing.
        let dry = try await admin.send(CollectGarbage(dry_run: true))
        XCTAssertEqual(dry, GarbageCollected(dry_run: true, artifact_records: 2, uploads: 1, files: 2, bytes_freed: Int64(c1.size) + Int64(Frame.chunkSize)))
        XCTAssertTrue(stored(c1))
        let keeping = try await admin.send(CollectGarbage(dry_run: true, keep_succeeded_checkpoints: true))
        XCTAssertEqual(keeping.artifact_records, 1, "only attempt 1 of job 2")

        let done = try await admin.send(CollectGarbage())
        XCTAssertEqual(done, GarbageCollected(dry_run: false, artifact_records: 2, uploads: 1, files: 2, bytes_freed: Int64(c1.size) + Int64(Frame.chunkSize)))
        XCTAssertFalse(stored(c1), "a succeeded job's checkpoint")
        XCTAssertTrue(stored(a1), "a result")
        XCTAssertTrue(stored(c2b), "what job 2 would resume from")
        XCTAssertTrue(stored(c2a) && stored(c3), "job 3 (running) names the same content as job 2's superseded checkpoint")
        let parts = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("data/uploads").path)
        XCTAssertEqual(parts, [], "the abandoned upload's part file")
        let d1 = try await admin.send(JobQuery(job: 1))
        XCTAssertEqual(d1.artifacts.map(\.name).sorted(), ["adapter_model.safetensors"])
        try await ArtifactTransfer.download(admin, a1, to: dir.appendingPathComponent("a1"))
        do { _ = try await admin.sendRaw(ReadArtifact(sha256: c1.sha256, offset: 0, length: 10)).decode(ArtifactChunk.self); XCTFail("removed content served") } catch let e as ErrorReply {
            XCTAssertEqual(e.code, .notFound)
        }
        // Job 2's next attempt resumes from attempt 2's checkpoint, which gc kept.
        try await Task.sleep(nanoseconds: 500_000_000)      // its backoff (200 ms) ends
        let l2c = try await w.send(cpu)
        XCTAssertEqual(l2c.job, 2)
        XCTAssertEqual(l2c.resume.map(\.sha256), [c2b.sha256])
        // Nothing more to do; and the audit log says who collected.
        let again = try await admin.send(CollectGarbage())
        XCTAssertEqual(again, GarbageCollected(dry_run: false, artifact_records: 0, uploads: 0, files: 0, bytes_freed: 0))
        let audit = try await admin.send(AuditQuery()).rows.filter { $0.action == "gc" }
        XCTAssertEqual(audit.count, 2)
    }

    func testArtifactQuotasRefuseUploadsThatAreTooBig() async throws {
        try await start { $0.quota.maxArtifactBytes = 1000; $0.quota.maxAttemptBytes = 1500 }
        let admin = try await WireClient.connect(addr, token: nil, role: "client")
        defer { admin.close() }
        _ = try await admin.send(Submit(spec: "name: q\ntrainer: command\ncommand: [x]"))
        let w = try await worker()
        defer { w.close() }
        let l = try await w.send(JobRequest(free_gpus: [], trainers: ["command"]))
        do {
            try await upload(w, l, "output", "huge.bin", String(repeating: "h", count: 1001))
            XCTFail("an artifact over the limit was accepted")
        } catch let e as ErrorReply {
            XCTAssertEqual(e.code, .quotaExceeded)
            XCTAssert(e.message.contains("huge.bin is 1001 bytes, over the coordinator's limit of 1000 per artifact"), e.message)
        }
        try await upload(w, l, "output", "a.bin", String(repeating: "a", count: 900))
        try await upload(w, l, "output", "a.bin", String(repeating: "b", count: 900))   // replacing a.bin: still 900 in all
        do {
            try await upload(w, l, "output", "c.bin", String(repeating: "c", count: 700))
            XCTFail("an attempt over its limit was accepted")
        } catch let e as ErrorReply {
            XCTAssertEqual(e.code, .quotaExceeded)
            XCTAssert(e.message.contains("would bring this attempt's artifacts to 1600 bytes, over the coordinator's limit of 1500 per attempt"), e.message)
        }
    }
}
