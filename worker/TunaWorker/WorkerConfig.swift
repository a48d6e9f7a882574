import Foundation
import NIOSSL
import TunaCore

public struct WorkerConfig: Sendable {
    public var coordinator: HostPort
    public var workDir: URL
    public var token: String?
    /// With no `token`, read the loopback coordinator's token for this user (`LocalToken`) at
    /// every connection: a restarted coordinator makes a new one.
    public var useLocalToken = false
    /// TLS to the coordinator (`--tls-ca`, and a client certificate if it requires one).
    public var tls: NIOSSLContext?
    public var maxJobs = 1
    /// CPU threads per job (`--threads-per-job`); nil: an even share of the box's cores.
    public var threadsPerJobOverride: Int?
    /// A native job's OpenBLAS threads (it holds no GPU): `--threads-per-job`, else an even
    /// share of the box's cores among the job slots.
    public var threadsPerJob: Int {
        threadsPerJobOverride ?? max(1, ProcessInfo.processInfo.activeProcessorCount / maxJobs)
    }

    /// `TUNA_CPU_THREADS` for a job holding `gpus` of the box's `boxGPUs`: with
    /// `--threads-per-job`, that many per GPU held (at least one share); else the cores split
    /// by the larger of the job slots and the GPUs, one share per GPU held. Never more than the
    /// box's cores, and the jobs running at once never add up to more than the cores (when the
    /// option is not given): two 4-GPU jobs on an 8-GPU box with --max-jobs 2 get half each.
    public func cpuThreads(gpus: Int, boxGPUs: Int) -> Int {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        if let perJob = threadsPerJobOverride { return min(cores, perJob * max(1, gpus)) }
        return max(1, cores * max(1, gpus) / max(maxJobs, boxGPUs, 1))
    }
    public var name: String?
    public var trainers: [Trainer] = [CommandTrainer()]
    /// Seconds a trainer gets between SIGTERM and SIGKILL.
    public var graceSeconds = 30.0
    /// How often a running job's checkpoint directory is checked and, if it changed, uploaded.
    public var checkpointSyncSeconds = 60.0
    /// Reconnect backoff bounds, seconds.
    public var backoffMin = 0.2
    public var backoffMax = 5.0
    /// Overrides the probed GPUs (tests, or a box whose nvidia-smi lies).
    public var gpus: [GPUInfo]?
    /// Exit once no job has run for this many seconds (`--exit-when-idle`); nil: never.
    public var exitWhenIdleSeconds: Double?

    public init(coordinator: HostPort, workDir: URL, token: String?) {
        self.coordinator = coordinator; self.workDir = workDir; self.token = token
    }
}
