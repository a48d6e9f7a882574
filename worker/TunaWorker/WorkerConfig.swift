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
    /// Each job's CPU threads: the native trainer's OpenBLAS threads, and `TUNA_CPU_THREADS`
    /// for every trainer (the torch launcher's OMP_NUM_THREADS), so jobs side by side do not
    /// oversubscribe the cores.
    public var threadsPerJob: Int {
        threadsPerJobOverride ?? max(1, ProcessInfo.processInfo.activeProcessorCount / maxJobs)
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
