import Foundation
import XCTest
import TunaCore
import TunaWire
import TunaWorker
#if canImport(Glibc)
import Glibc
#endif

/// What a GPU fleet needs of workers and the coordinator, with real processes: GPUs as
/// nvidia-smi reports them (a stand-in nvidia-smi on PATH), narrowed by an inherited
/// CUDA_VISIBLE_DEVICES and --gpus; a trainer sees only its own GPUs, by UUID; jobs no worker
/// can take say why; --exit-when-idle; other protocol versions refused by name.
final class FleetTests: XCTestCase {
    var cluster: Cluster!

    override func setUp() async throws { cluster = try Cluster() }
    override func tearDown() async throws { cluster.shutdown() }

    /// A folder with an `nvidia-smi` that answers the worker's query for two H200s.
    func fakeNvidiaSMI() throws -> String {
        let bin = cluster.dir.appendingPathComponent("fake-bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        let script = """
            #!/bin/sh
            case "$*" in *--query-gpu=index,uuid,name,memory.total,driver_version*) ;; *) echo "unexpected query: $*" >&2; exit 9;; esac
            echo "0, GPU-aaaa1111-0000, NVIDIA H200, 143771, 580.159.03"
            echo "1, GPU-bbbb2222-0000, NVIDIA H200, 143771, 580.159.03"
            """
        let path = bin.appendingPathComponent("nvidia-smi")
        try script.write(to: path, atomically: true, encoding: .utf8)
        chmod(path.path, 0o755)
        return bin.path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
    }

    func workers() async throws -> [WorkerRow] {
        let c = try await cluster.client()
        defer { c.close() }
        return try await c.send(ListWorkers()).rows
    }

    func testWorkerUsesOnlyItsGPUsAndTrainersSeeTheirOwnByUUID() async throws {
        let path = try fakeNvidiaSMI()
        try cluster.startCoordinator()
        // Slurm (say) gave this worker the second GPU only.
        try cluster.startWorker("slurm", env: ["PATH": path, "CUDA_VISIBLE_DEVICES": "1"])
        // This one leaves GPU 1 to others.
        try cluster.startWorker("shared", extra: ["--gpus", "0"], env: ["PATH": path])
        try await cluster.waitUntil("both workers registered") { try await workers().filter(\.connected).count == 2 }
        let byName = Dictionary(uniqueKeysWithValues: try await workers().map { ($0.name, $0.capabilities.gpus) })
        XCTAssertEqual(byName["slurm"]?.map(\.index), [1])
        XCTAssertEqual(byName["slurm"]?.first?.uuid, "GPU-bbbb2222-0000")
        XCTAssertEqual(byName["slurm"]?.first?.driver, "580.159.03")
        XCTAssertEqual(byName["slurm"]?.first?.name, "NVIDIA H200")
        XCTAssertEqual(byName["slurm"]?.first?.memory_gb, 140.4)
        XCTAssertEqual(byName["shared"]?.map(\.index), [0])
        let table = try cluster.cli(["workers"])
        XCTAssert(table.out.contains("1:NVIDIA H200 140.4G") && table.out.contains("580.159.03"), table.out)

        // Two one-GPU jobs: each trainer is told its own GPU by UUID, in PCI bus order.
        let probe = #"echo "{\"event\":\"env\",\"cuda\":\"$CUDA_VISIBLE_DEVICES\",\"order\":\"$CUDA_DEVICE_ORDER\"}"; exec "# + cluster.toyTrainer
        let spec = """
            name: gpus
            trainer: command
            command: ["/bin/sh", "-c", '\(probe)']
            resources: {gpus: 1, gpu_memory_gb: 100}
            steps: 3
            lr: [0.001, 0.002]
            """
        let sweep = try await cluster.submit(spec).sweep
        try await cluster.waitUntil("both jobs succeeded") { try await cluster.results(sweep).allSatisfy { $0.status == .succeeded } }
        var seen: [String: String] = [:]
        for r in try await cluster.results(sweep) {
            let env = try await cluster.events(r.id).map(\.event).first { $0["event"]?.stringValue == "env" }
            XCTAssertEqual(env?["order"]?.stringValue, "PCI_BUS_ID")
            seen[r.worker ?? "?"] = env?["cuda"]?.stringValue
        }
        XCTAssertEqual(seen, ["slurm": "GPU-bbbb2222-0000", "shared": "GPU-aaaa1111-0000"])
    }

    /// One worker, two GPUs, `--max-jobs 2`: two one-GPU jobs run at the same time, each on its
    /// own GPU (each waits until the other has started), each with its share of the CPU and the
    /// worker's grace in its environment; then one job across both GPUs sees both, in order, with
    /// a share for each.
    func testOneWorkerRunsAJobPerGPUSideBySideAndAJobAcrossBoth() async throws {
        let path = try fakeNvidiaSMI()
        try cluster.startCoordinator()
        try cluster.startWorker("box", maxJobs: 2, grace: 7, extra: ["--threads-per-job", "1"], env: ["PATH": path])
        let meet = cluster.dir.appendingPathComponent("meet")
        try FileManager.default.createDirectory(at: meet, withIntermediateDirectories: true)
        let env = #"{\"event\":\"env\",\"cuda\":\"$CUDA_VISIBLE_DEVICES\",\"met\":$(ls "\#(meet.path)" | wc -l),\"threads\":\"$TUNA_CPU_THREADS\",\"grace\":\"$TUNA_STOP_GRACE_SECONDS\"}"#
        let probe = #"touch "\#(meet.path)/$CUDA_VISIBLE_DEVICES"; i=0; "#
            + #"while [ "$(ls "\#(meet.path)" | wc -l)" -lt 2 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; "#
            + #"echo "\#(env)"; exec "# + cluster.toyTrainer
        let sweep = try await cluster.submit("""
            name: side-by-side
            trainer: command
            command: ["/bin/sh", "-c", '\(probe)']
            resources: {gpus: 1, gpu_memory_gb: 100}
            steps: 3
            lr: [0.001, 0.002]
            """).sweep
        try await cluster.waitUntil("both jobs succeeded") { try await cluster.results(sweep).allSatisfy { $0.status == .succeeded } }
        var gpus: [String] = []
        for r in try await cluster.results(sweep) {
            let e = try await cluster.events(r.id).map(\.event).first { $0["event"]?.stringValue == "env" }
            XCTAssertEqual(e?["met"]?.intValue, 2, "job \(r.id) ran alone: \(String(describing: e))")
            XCTAssertEqual(e?["threads"]?.stringValue, "1")
            XCTAssertEqual(e?["grace"]?.stringValue, "7")
            gpus.append(e?["cuda"]?.stringValue ?? "?")
        }
        XCTAssertEqual(gpus.sorted(), ["GPU-aaaa1111-0000", "GPU-bbbb2222-0000"])

        let both = try await cluster.submit("""
            name: across
            trainer: command
            command: ["/bin/sh", "-c", 'echo "{\\"event\\":\\"env\\",\\"cuda\\":\\"$CUDA_VISIBLE_DEVICES\\",\\"threads\\":\\"$TUNA_CPU_THREADS\\"}"; exec \(cluster.toyTrainer)']
            resources: {gpus: 2}
            steps: 3
            """).sweep
        // The worker's job request was parked with one GPU free (the other job still ran): its
        // heartbeats tell the coordinator that both are free now.
        try await cluster.waitUntil("the two-GPU job succeeded") { try await cluster.results(both).allSatisfy { $0.status == .succeeded } }
        let rows = try await cluster.results(both)
        let job = try XCTUnwrap(rows.first)
        let e = try await cluster.events(job.id).map(\.event).first { $0["event"]?.stringValue == "env" }
        XCTAssertEqual(e?["cuda"]?.stringValue, "GPU-aaaa1111-0000,GPU-bbbb2222-0000")
        // a job slot's CPU share for each of its GPUs, at most the box's cores
        XCTAssertEqual(e?["threads"]?.stringValue, String(min(2, ProcessInfo.processInfo.activeProcessorCount)))
    }

    func testAWorkerNamingAGPUTheBoxLacksStopsWithAClearError() throws {
        let path = try fakeNvidiaSMI()
        for (args, env, expected) in [
            (["--gpus", "3"], [:], "--gpus 3: this box has no such GPU visible to the worker (visible: 0, 1)"),
            (["--gpus", "0"], ["CUDA_VISIBLE_DEVICES": "1"], "visible: 1; CUDA_VISIBLE_DEVICES=1"),
            ([], ["CUDA_VISIBLE_DEVICES": "7"], "CUDA_VISIBLE_DEVICES=7: 7 is not a GPU of this box"),
            ([], ["CUDA_VISIBLE_DEVICES": "MIG-1234"], "MIG instances are not supported yet"),
            (["--gpus", "0,0"], [:], "give distinct nvidia-smi indices"),
        ] as [([String], [String: String], String)] {
            let p = try cluster.spawn(["worker", "--coordinator", "127.0.0.1:1", "--work-dir", cluster.dir.appendingPathComponent("w").path] + args,
                                      log: "bad-worker.log", env: env.merging(["PATH": path]) { $1 })
            p.waitUntilExit()
            XCTAssertNotEqual(p.terminationStatus, 0, "\(args) \(env)")
            XCTAssert(cluster.log("bad-worker.log").contains(expected), "\(args) \(env): \(cluster.log("bad-worker.log"))")
        }
        // An inherited UUID works like an index.
        let gpus = try GPUSelection.select(probed: HardwareProbe.parseNvidiaSMI("0, GPU-aa, A, 1024, 1\n1, GPU-bb, B, 2048, 1\n"),
                                           inheritedVisible: "GPU-bb", requested: nil)
        XCTAssertEqual(gpus.map(\.index), [1])
        XCTAssertEqual(try GPUSelection.select(probed: gpus, inheritedVisible: "", requested: nil).count, 0, "an empty CUDA_VISIBLE_DEVICES hides every GPU")
    }

    /// Each job's CPU share (`TUNA_CPU_THREADS`): by default the cores split by the larger of
    /// the job slots and the box's GPUs, one share per GPU held, so the jobs a worker can run at
    /// once never add up to more than the cores; with --threads-per-job that many per GPU held,
    /// at most the cores.
    func testCPUSharesOfJobsRunningAtOnceNeverExceedTheCores() throws {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        var config = WorkerConfig(coordinator: try HostPort(parsing: "127.0.0.1:1"), workDir: cluster.dir, token: nil)
        // (slots, box GPUs, the GPUs of jobs that can run at once)
        for (slots, box, jobs) in [(2, 8, [4, 4]), (8, 8, Array(repeating: 1, count: 8)), (3, 2, [0, 1, 1]), (1, 0, [0]),
                                   (2, 2, [2]), (4, 8, [2, 2, 2, 2])] {
            config.maxJobs = slots
            let shares = jobs.map { config.cpuThreads(gpus: $0, boxGPUs: box) }
            XCTAssert(shares.allSatisfy { $0 >= 1 }, "\(slots) slots, \(box) GPUs: \(shares)")
            XCTAssertLessThanOrEqual(shares.reduce(0, +), max(cores, jobs.count), "\(slots) slots, \(box) GPUs, jobs \(jobs): \(shares)")
        }
        config.maxJobs = 2
        XCTAssertEqual(config.cpuThreads(gpus: 4, boxGPUs: 8), max(1, cores / 2), "half the box's GPUs: half its cores")
        XCTAssertEqual(config.cpuThreads(gpus: 0, boxGPUs: 0), max(1, cores / 2), "no GPUs: a slot's share")
        config.threadsPerJobOverride = 1
        XCTAssertEqual(config.cpuThreads(gpus: 3, boxGPUs: 8), min(cores, 3))
        XCTAssertEqual(config.cpuThreads(gpus: 0, boxGPUs: 8), 1)
    }

    func testJobsNoWorkerCanTakeSayWhyAtSubmitAndInTunaJobs() async throws {
        let path = try fakeNvidiaSMI()
        try cluster.startCoordinator()
        try cluster.startWorker("box", env: ["PATH": path])
        try await cluster.waitUntil("worker registered") { try await workers().contains { $0.connected } }
        let specFile = cluster.dir.appendingPathComponent("big.yaml")
        try cluster.toySpec(name: "big", "resources: {gpus: 2, gpu_memory_gb: 200}\nsteps: 2\n").write(to: specFile, atomically: true, encoding: .utf8)
        let submitted = try cluster.cli(["submit", specFile.path])
        XCTAssertEqual(submitted.status, 0, submitted.out)
        XCTAssert(submitted.out.contains("note: 1 job(s) cannot start yet: no connected worker offering `command` has 2 GPU(s) with at least 200 GiB each (the closest, box, has 2 GPU(s), the largest 140.4 GiB)"), submitted.out)

        let c = try await cluster.client()
        defer { c.close() }
        let waiting = try await c.send(WaitingQuery()).rows
        XCTAssertEqual(waiting.count, 1)
        XCTAssertTrue(waiting[0].blocked)
        let jobs = try cluster.cli(["jobs"])
        XCTAssert(jobs.out.contains("no connected worker offering `command` has 2 GPU(s)"), jobs.out)
        let one = try cluster.cli(["jobs", "\(waiting[0].job)"])
        XCTAssert(one.out.contains("waiting: no connected worker offering"), one.out)
        let json = try cluster.cli(["jobs", "--json"])
        XCTAssert(json.out.contains("\"waiting\" : \"no connected worker offering"), json.out)

        // `tuna submit` asks for the reasons grouped: a line per reason with its count, for a
        // sweep of any size; the jobs that fit are not listed.
        let mixedFile = cluster.dir.appendingPathComponent("mixed.yaml")
        try cluster.toySpec(name: "mixed", "resources: {gpus: [0, 2], gpu_memory_gb: 200}\nsteps: 2\nshard: [1, 2, 3]\n")
            .write(to: mixedFile, atomically: true, encoding: .utf8)
        let mixed = try cluster.cli(["submit", "--json", mixedFile.path])
        let mixedSweep = try XCTUnwrap(try JSONValue.parse(mixed.out)["sweep"]?.intValue, mixed.out)
        let groups = try await c.send(WaitingQuery(sweep: Int64(mixedSweep), grouped: true)).rows.filter(\.blocked)
        XCTAssertEqual(groups.map(\.jobs), [3], "\(groups)")
        XCTAssertEqual(groups.first?.reason.hasPrefix("no connected worker offering `command` has 2 GPU(s)"), true, "\(groups)")
        let again = try cluster.cli(["submit", mixedFile.path])
        XCTAssert(again.out.contains("note: 3 job(s) cannot start yet: no connected worker offering `command` has 2 GPU(s)"), again.out)
        XCTAssertEqual(again.out.components(separatedBy: "note:").count, 2, again.out)

        // With no worker connected at all, that is what it says.
        cluster.kill9(worker: "box")
        try await cluster.waitUntil("worker gone") { try await !workers().contains { $0.connected } }
        let none = try await c.send(WaitingQuery()).rows
        XCTAssertEqual(none.first?.reason, "no worker is connected")
    }

    func testWaitReasonRules() {
        func offer(_ name: String, trainers: [String], gpus: [Double], connected: Bool = true, quarantined: Bool = false) -> WaitReason.Offer {
            WaitReason.Offer(name: name, connected: connected, quarantined: quarantined,
                             capabilities: Capabilities(hostname: name, trainers: trainers,
                                                        gpus: gpus.enumerated().map { GPUInfo(index: $0.offset, name: "G", memory_gb: $0.element) },
                                                        cpu_cores: 2, ram_gb: 8))
        }
        let torch1 = WaitReason.Need(trainer: "torch", gpus: 1, gpuMemoryGB: 100)
        XCTAssertEqual(WaitReason.blocked(torch1, offers: []), "no worker is connected")
        XCTAssertEqual(WaitReason.blocked(torch1, offers: [offer("a", trainers: ["torch"], gpus: [140], connected: false)]), "no worker is connected")
        XCTAssertEqual(WaitReason.blocked(torch1, offers: [offer("a", trainers: ["native", "command"], gpus: [140])]),
                       "no connected worker offers trainer `torch` (offered: command, native)")
        XCTAssertEqual(WaitReason.blocked(torch1, offers: [offer("a", trainers: ["torch"], gpus: [80, 80]), offer("b", trainers: ["torch"], gpus: [])]),
                       "no connected worker offering `torch` has 1 GPU(s) with at least 100 GiB each (the closest, a, has 2 GPU(s), the largest 80 GiB)")
        XCTAssertNil(WaitReason.blocked(torch1, offers: [offer("a", trainers: ["torch"], gpus: [80]), offer("b", trainers: ["torch"], gpus: [141])]))
        // k GPUs fit when the k-th largest has the memory
        let two = WaitReason.Need(trainer: "torch", gpus: 2, gpuMemoryGB: 100)
        XCTAssertNotNil(WaitReason.blocked(two, offers: [offer("a", trainers: ["torch"], gpus: [141, 80])]))
        XCTAssertNil(WaitReason.blocked(two, offers: [offer("a", trainers: ["torch"], gpus: [141, 141, 80])]))
        XCTAssertEqual(WaitReason.blocked(two, offers: [offer("q", trainers: ["torch"], gpus: [141, 141], quarantined: true)]),
                       "every worker that could run it is quarantined (q): `tuna workers` says why")
        XCTAssertNil(WaitReason.blocked(WaitReason.Need(trainer: "native", gpus: 0, gpuMemoryGB: 0), offers: [offer("cpu", trainers: ["native"], gpus: [])]))
    }

    func testExitWhenIdleEndsTheWorkerAfterTheQueueRunsDry() async throws {
        try cluster.startCoordinator()
        try cluster.startWorker("idle", extra: ["--exit-when-idle", "2"])
        let sweep = try await cluster.submit(cluster.toySpec("steps: 30\nstep_ms: 50\n")).sweep
        try await cluster.waitUntil("job succeeded") { try await cluster.results(sweep).first?.status == .succeeded }
        // it ran a 1.5 s job although its idle limit is 2 s: only time without a job counts
        let worker = cluster.workers["idle"]!
        let deadline = Date().addingTimeInterval(15)
        while worker.isRunning && Date() < deadline { try await Task.sleep(nanoseconds: 100_000_000) }
        XCTAssertFalse(worker.isRunning, "worker still running 15 s after its last job")
        XCTAssertEqual(worker.terminationStatus, 0)
        XCTAssert(cluster.log("worker-idle.log").contains("no job for 2 s (--exit-when-idle): exiting"), cluster.log("worker-idle.log"))
        let attempts = try await cluster.results(sweep).first?.attempts
        XCTAssertEqual(attempts, 1)
    }

    /// Slurm's scancel (and systemd's default KillMode) signal every process of the job: the
    /// trainer may get SIGTERM, checkpoint and exit before the worker's own SIGTERM lands. That
    /// exit is a return, not a failure. Here the trainer is signalled first, 100 ms before
    /// the worker.
    func testTrainerSignalledBeforeItsWorkerIsAHandBackNotAFailure() async throws {
        try cluster.startCoordinator()
        try cluster.startWorker("w1", grace: 5)
        let s = try await cluster.submit(cluster.toySpec("steps: 200\nstep_ms: 50\ncheckpoint_every: 5"))
        let jobID = try await cluster.results(s.sweep)[0].id
        try await cluster.waitUntil("w1 passes step 8") {
            try await cluster.events(jobID).contains { ($0.event["step"]?.intValue ?? 0) >= 8 }
        }
        let w1 = try XCTUnwrap(cluster.workers["w1"])
        let pgrep = try cluster.runTool("/usr/bin/pgrep", ["-P", "\(w1.processIdentifier)"])
        let trainer = try XCTUnwrap(pid_t(pgrep.trimmingCharacters(in: .whitespacesAndNewlines)), "the trainer's pid: \(pgrep)")
        kill(trainer, SIGTERM)
        try await Task.sleep(nanoseconds: 100_000_000)
        kill(w1.processIdentifier, SIGTERM)
        w1.waitUntilExit()
        let handed = try await cluster.job(jobID)
        XCTAssertEqual(handed.attempts.map(\.state), ["returned"], cluster.log("worker-w1.log"))
        XCTAssertEqual(handed.job.status, .queued)
    }

    /// A session always ends by throwing, so the worker's reconnect backoff used to grow with
    /// every coordinator restart and never start over: after a few restarts it waited 5 s to
    /// reconnect while its leases ran out. A session that registered now resets it.
    func testReconnectBackoffStartsOverAfterEverySessionThatRegistered() async throws {
        try cluster.startCoordinator()
        try cluster.startWorker("w")
        try await cluster.waitUntil("the worker registered") { try await workers().contains { $0.connected } }
        var latencies: [Double] = []
        for _ in 0..<5 {
            cluster.kill9Coordinator()
            try await Task.sleep(nanoseconds: 500_000_000)   // a few failed reconnects: 0.2 s, 0.4 s
            try cluster.startCoordinator()
            let restarted = Date()
            try await cluster.waitUntil("the worker is back") { try await workers().contains { $0.connected } }
            latencies.append(Date().timeIntervalSince(restarted))
        }
        // Started over at 0.2 s each time, the next try comes within 0.8 s (+20% jitter); grown
        // without a reset it would be 5 s by the third restart.
        print("reconnect latencies after each restart: \(latencies.map { String(format: "%.2f s", $0) })")
        XCTAssertLessThan(latencies.suffix(3).max()!, 2.0, "reconnect latencies after each restart: \(latencies)")
    }

    func testAPeerOfAnotherProtocolVersionIsRefusedNamingBothReleases() async throws {
        try cluster.startCoordinator()
        let addr = HostPort(host: "127.0.0.1", port: cluster.port)
        do {
            _ = try await WireClient.connect(addr, hello: Hello(version: ProtocolVersion.current + 1, token: nil, role: "worker", tuna: "9.0.0"))
            XCTFail("a peer of another protocol version was let in")
        } catch let e as ErrorReply {
            XCTAssertEqual(e.code, .version)
            XCTAssertEqual(e.message, "this coordinator (tuna \(TunaVersion.current)) speaks protocol version \(ProtocolVersion.current), but this tuna 9.0.0 speaks version \(ProtocolVersion.current + 1): run the same release of tuna on the coordinator, the workers and the CLI")
            XCTAssertEqual("\(e)", e.message, "what the CLI prints is the message, not a debug description")
        }
        let version = try cluster.cliLocal(["version", "--json"])
        XCTAssertEqual(version.status, 0)
        let info = try JSONValue.parse(Data(version.out.utf8))
        XCTAssertEqual(info["tuna"]?.stringValue, TunaVersion.current)
        XCTAssertEqual(info["protocol"]?.intValue, ProtocolVersion.current)
        XCTAssertEqual(info["build"]?.stringValue, "from source")
    }
}
