import ArgumentParser
import Foundation
import Logging
import TunaCore
import TunaWorker

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "worker",
        abstract: "Run a worker daemon: takes jobs from the coordinator and runs them on this box.")

    @Option(help: "Coordinator address HOST:PORT.")
    var coordinator = ProcessInfo.processInfo.environment["TUNA_COORDINATOR"] ?? "127.0.0.1:7070"

    @Option(help: "Directory for job files, outputs and checkpoints.")
    var workDir = "tuna-work"

    @Option(help: "File holding the shared token (default: $TUNA_TOKEN_FILE, else the token in $TUNA_TOKEN).")
    var tokenFile: String?

    @OptionGroup var tls: ClientTLSOptions

    @Option(help: "How many jobs to run at once.")
    var maxJobs = 1

    @Option(help: "Name shown in `tuna workers` (default: the hostname).")
    var name: String?

    @Option(help: "Seconds a trainer gets between SIGTERM and SIGKILL.")
    var grace = 30.0

    @Option(help: "Seconds between uploads of a running job's changed checkpoint (resume after a crash).")
    var checkpointSync = 60.0

    @Option(help: "Relative model and data paths of native jobs are resolved against this directory (default: the current one).")
    var dataRoot: String?

    @Option(help: "CPU threads per job, per GPU it holds (default: the cores split by the larger of --max-jobs and the GPUs): a native job's OpenBLAS threads; every trainer gets TUNA_CPU_THREADS.")
    var threadsPerJob: Int?

    @Option(help: "Offer the torch trainer: the path of its launcher (worker/tuna-torch in the repository).")
    var torchTrainer: String?

    @Option(help: ArgumentHelp("Use only these GPUs (nvidia-smi indices, e.g. 0,2); default: every GPU visible to the worker (an inherited CUDA_VISIBLE_DEVICES narrows them).", valueName: "indices"))
    var gpus: String?

    @Option(help: ArgumentHelp("Exit once no job has run for this many seconds (a Slurm allocation or cloud box given back when the queue is empty).", valueName: "seconds"))
    var exitWhenIdle: Double?

    /// --gpus parsed.
    var gpuIndices: [Int]? {
        get throws {
            guard let gpus else { return nil }
            let parts = gpus.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            let indices = parts.compactMap { Int($0) }
            guard indices.count == parts.count, indices.allSatisfy({ $0 >= 0 }), Set(indices).count == indices.count else {
                throw ValidationError("--gpus \(gpus): give distinct nvidia-smi indices separated by commas, e.g. 0,2")
            }
            return indices
        }
    }

    func validate() throws {
        guard maxJobs >= 1 else { throw ValidationError("--max-jobs must be at least 1") }
        guard grace >= 0 else { throw ValidationError("--grace must be >= 0") }
        if let threadsPerJob { guard threadsPerJob >= 1 else { throw ValidationError("--threads-per-job must be at least 1") } }
        guard checkpointSync > 0 else { throw ValidationError("--checkpoint-sync must be > 0") }
        if let exitWhenIdle { guard exitWhenIdle > 0 else { throw ValidationError("--exit-when-idle must be > 0") } }
        _ = try gpuIndices
        if let name, let problem = Register.nameProblem(name) { throw ValidationError("--name: \(problem)") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let address = try HostPort(parsing: coordinator)
        var config = WorkerConfig(coordinator: address, workDir: URL(fileURLWithPath: workDir), token: try readToken(file: tokenFile))
        config.useLocalToken = config.token == nil && address.isLoopback
        config.tls = try tls.context()
        config.maxJobs = maxJobs
        config.threadsPerJobOverride = threadsPerJob
        config.name = name
        config.graceSeconds = grace
        config.checkpointSyncSeconds = checkpointSync
        config.exitWhenIdleSeconds = exitWhenIdle
        // The GPUs this worker may use: nvidia-smi's, narrowed by an inherited
        // CUDA_VISIBLE_DEVICES (Slurm sets it) and by --gpus.
        do {
            config.gpus = try GPUSelection.select(probed: HardwareProbe.gpus(),
                                                  inheritedVisible: ProcessInfo.processInfo.environment["CUDA_VISIBLE_DEVICES"],
                                                  requested: try gpuIndices)
        } catch let p as GPUSelection.Problem { throw ValidationError(p.description) }
        // `native` jobs run `tuna train` (this very executable) in a child process.
        let root = URL(fileURLWithPath: dataRoot ?? FileManager.default.currentDirectoryPath).standardizedFileURL.path
        config.trainers.append(ExecutableTrainer(name: "native", prefix: [Self.executablePath(), "train", "--root", root,
                                                                           "--threads", String(config.threadsPerJob)]))
        if let torchTrainer {
            // the torch trainer asks this same executable to tokenize and plan (`tuna prepare`)
            let launcher = URL(fileURLWithPath: torchTrainer).standardizedFileURL.path
            guard FileManager.default.isExecutableFile(atPath: launcher) else {
                throw ValidationError("--torch-trainer \(torchTrainer) is not an executable file")
            }
            config.trainers.append(ExecutableTrainer(name: "torch", prefix: [launcher, "--tuna", Self.executablePath(), "--root", root]))
        }
        let daemon = try WorkerDaemon(config: config)
        // SIGTERM/SIGINT: return running jobs to the queue (after their trainers checkpoint), then exit.
        let signals = TerminationSignals { daemon.terminate() }
        defer { signals.cancel() }
        await daemon.run()
    }

    /// This executable's absolute path (/proc/self/exe on Linux), so the trainer child runs the
    /// same build as the worker.
    static func executablePath() -> String {
        if let p = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return p }
        return URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
    }
}
