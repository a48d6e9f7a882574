import Crypto
import Foundation
import TunaCore
import TunaWire
#if canImport(Glibc)
import Glibc
#endif

/// Runs one attempt of one job: prepares its directories, fetches the checkpoint to resume
/// from, starts the trainer, streams its lines as events, uploads what it left, and reports
/// the outcome. Talks to the coordinator only through the daemon (which survives reconnects).
actor JobRunner {
    /// Why the runner stops its trainer: the job was cancelled, or the worker is shutting down and
    /// returns the job to the queue (an unfailed `returned` attempt).
    enum Stop: Equatable { case cancelled(String), returned }

    let lease: Lease
    /// The lease's job spec, decoded by the daemon (a failure fails the attempt with its message).
    let spec: Result<JobSpec, Error>
    let ref: AttemptRef
    let trainer: Trainer
    let gpus: [GPUInfo]
    let dir: URL
    let daemon: WorkerDaemon
    let graceSeconds: Double
    let checkpointSyncSeconds: Double
    let cpuThreads: Int
    private var child: ChildProcess?
    /// How long a trainer's unasked non-zero exit waits for the worker's own SIGTERM (above).
    static let unaskedExitGraceNs: UInt64 = 1_000_000_000
    private var stop: Stop?

    init(lease: Lease, spec: Result<JobSpec, Error>, trainer: Trainer, gpus: [GPUInfo], workDir: URL, daemon: WorkerDaemon, graceSeconds: Double, checkpointSyncSeconds: Double,
         cpuThreads: Int) {
        self.lease = lease
        self.cpuThreads = cpuThreads
        self.spec = spec
        self.checkpointSyncSeconds = checkpointSyncSeconds
        self.ref = AttemptRef(job: lease.job, attempt: lease.attempt)
        self.trainer = trainer; self.gpus = gpus; self.daemon = daemon; self.graceSeconds = graceSeconds
        dir = workDir.appendingPathComponent("jobs/job-\(lease.job)/attempt-\(lease.attempt)")
        cacheDir = workDir.appendingPathComponent("cache")
    }

    var output: URL { dir.appendingPathComponent("output") }
    var checkpoints: URL { dir.appendingPathComponent("checkpoint") }
    var resume: URL { dir.appendingPathComponent("resume") }
    /// Shared by every job on this worker: what one job computed and another can reuse
    /// (e.g. a pruning job's expert profile for another N). Trainers write it atomically.
    let cacheDir: URL

    /// The step of the trainer's `paused` event, if it printed one (it was asked to pause there).
    private var pausedAt: Int?

    func run() async {
        let outcome: (ok: Bool, reason: String)
        do { outcome = try await execute() } catch { outcome = (false, "\(error)") }
        await finish(ok: outcome.ok, reason: outcome.reason)
    }

    private func execute() async throws -> (ok: Bool, reason: String) {
        let spec = try self.spec.get()
        let fm = FileManager.default
        for d in [output, checkpoints, resume] { try fm.createDirectory(at: d, withIntermediateDirectories: true) }
        let jobFile = dir.appendingPathComponent("job.json")
        try lease.spec.jsonData.write(to: jobFile)
        if !lease.resume.isEmpty { try await daemon.download(lease.resume, into: resume) }
        if stop != nil { return (false, "stopped before start") }

        let argv = try trainer.argv(spec: spec, jobFile: jobFile, outputDir: output)
        var env = ProcessInfo.processInfo.environment
        env["TUNA_JOB"] = jobFile.path
        env["TUNA_OUTPUT_DIR"] = output.path
        env["TUNA_CHECKPOINT_DIR"] = checkpoints.path
        env["TUNA_CACHE_DIR"] = cacheDir.path
        env["TUNA_JOB_ID"] = String(lease.job)
        env["TUNA_ATTEMPT"] = String(lease.attempt)
        if !lease.resume.isEmpty { env["TUNA_RESUME_DIR"] = resume.path } else { env["TUNA_RESUME_DIR"] = nil }
        // The attempt's own GPUs only, by UUID; indices (if a trainer prints them) in
        // nvidia-smi's order.
        env["CUDA_VISIBLE_DEVICES"] = GPUSelection.cudaVisibleDevices(gpus)
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        // Its share of the CPU (WorkerConfig.cpuThreads), and how long it has between SIGTERM
        // and SIGKILL (torchrun waits for its ranks less than that).
        env["TUNA_CPU_THREADS"] = String(cpuThreads)
        env["TUNA_STOP_GRACE_SECONDS"] = String(Int(graceSeconds.rounded(.down)))
        let child = try ChildProcess(argv: argv, env: env, cwd: dir.path)
        self.child = child
        await daemon.event(ref, ["event": "started", "argv": .array(argv.map(JSONValue.string)), "gpus": .array(gpus.map { .int($0.index) })])

        // While the trainer runs, new checkpoints go to the coordinator, so that a worker lost
        // without warning (kill -9, a dead box) still leaves the next attempt something to resume.
        let sync = Task { [checkpoints, ref, daemon, checkpointSyncSeconds] in
            var uploaded: [String] = []
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: UInt64(checkpointSyncSeconds * 1e9))
                let now = JobRunner.signature(of: checkpoints)
                guard !Task.isCancelled, !now.isEmpty, now != uploaded else { continue }
                do {
                    try await daemon.upload(ref, directory: checkpoints, kind: "checkpoint")
                    uploaded = now
                } catch {}
            }
        }
        defer { sync.cancel() }

        var sawDone = false
        for await (stream, line) in child.lines {
            if stream == "stdout", line.first == "{", let v = try? JSONValue.parse(line), v["event"]?.stringValue != nil {
                if v["event"]?.stringValue == "done" { sawDone = true }
                if TrainerEvent.kind(of: v) == .paused, let step = v["step"]?.intValue { pausedAt = step }
                await daemon.event(ref, v)
            } else {
                await daemon.event(ref, ["event": "log", "stream": .string(stream), "line": .string(String(line.prefix(4096)))])
            }
        }
        let code = await child.wait()
        // The same SIGTERM may reach the trainer before the worker (Slurm's scancel signals every
        // process of the job): a trainer that stops unasked gets a moment for the worker's own
        // SIGTERM to land, and if it does, the job is returned, not failed.
        if stop == nil, code != 0 {
            try? await Task.sleep(nanoseconds: JobRunner.unaskedExitGraceNs)
            if stop == nil, daemon.terminationRequested.withLockedValue({ $0 }) { stop = .returned }
        }
        sync.cancel()
        _ = await sync.value
        if case .cancelled(let why)? = stop { return (false, why) }
        // A trainer that finished while being asked to stop has finished: keep its result.
        if code == 0 { return (true, pausedAt.map { "paused at step \($0)" } ?? (sawDone ? "done" : "exited 0")) }
        if stop == .returned { return (false, "returned (worker shutting down)") }
        return (false, "trainer exited with code \(code)")
    }

    private func finish(ok: Bool, reason: String) async {
        if case .cancelled = stop { await daemon.forget(ref); return }
        var ok = ok, reason = reason
        let returned = !ok && stop == .returned
        do {
            do {
                if ok, pausedAt == nil {
                    try await daemon.upload(ref, directory: output, kind: "adapter")
                } else {
                    // Failed, returned or paused: the latest checkpoint lets the next attempt
                    // resume instead of starting over (a paused job's is the one it resumes from).
                    try await daemon.upload(ref, directory: checkpoints, kind: "checkpoint")
                }
            } catch let e as ErrorReply where e.code != .staleAttempt {
                // A file the coordinator refuses (a bad name, say) fails this attempt clearly.
                ok = false
                reason = "upload refused: \(e.message)"
            } catch let e as TunaError {
                ok = false
                reason = "upload failed: \(e)"
            }
            try await daemon.report(ref, ok: ok, reason: reason, returned: returned, pausedAt: ok ? pausedAt : nil)
        } catch {
            await daemon.log("job \(ref.job) attempt \(ref.attempt): could not report: \(error)")
        }
        await daemon.forget(ref)
    }

    /// Names, sizes and modification times of a directory's files: changes when a checkpoint does.
    static func signature(of dir: URL) -> [String] {
        ArtifactTransfer.files(in: dir).map { name, url in
            let a = try? FileManager.default.attributesOfItem(atPath: url.path)
            return "\(name) \((a?[.size] as? NSNumber)?.int64Value ?? -1) \((a?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)"
        }
    }

    /// Stops the trainer: SIGTERM (the trainer should checkpoint and exit), SIGKILL after the grace period.
    func stop(_ how: Stop) {
        if stop == nil { stop = how }
        guard let child else { return }
        child.signal(SIGTERM)
        let grace = graceSeconds
        Task {
            try? await Task.sleep(nanoseconds: UInt64(grace * 1e9))
            child.signal(SIGKILL)
        }
    }
}
