import ArgumentParser
import Foundation
import TunaCore
import TunaEngine
import TunaTrain

/// `tuna train`: one native LoRA job on this machine. The worker runs exactly this in a child
/// process for `trainer: native` jobs (docs/trainer-contract.md): events as JSON lines on
/// stdout, the adapter in --out, checkpoints in $TUNA_CHECKPOINT_DIR, resume from
/// $TUNA_RESUME_DIR, and on SIGTERM a checkpoint and exit 143.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "train",
        abstract: "Run one native job here: train a LoRA adapter, or prune experts (`task: prune`); a job.json from the worker or a sweep spec YAML.")

    @Argument(help: "A job JSON (what the worker writes) or a sweep spec YAML.") var job: String
    @Option(help: "Where the adapter goes (PEFT layout).") var out: String
    @Option(help: "With a YAML spec that expands to several jobs: which one (0-based).") var index: Int?
    @Option(help: "Relative model and data paths are resolved against this directory (default: the current one).") var root: String?
    @Option(help: "Checkpoint directory (default: $TUNA_CHECKPOINT_DIR).") var checkpointDir: String?
    @Option(help: "Resume from this checkpoint directory (default: $TUNA_RESUME_DIR).") var resumeDir: String?
    @Option(help: "OpenBLAS threads (default: OpenBLAS's own choice).") var threads: Int?

    func run() throws {
        let env = ProcessInfo.processInfo.environment
        let spec = try JobFile.load(job, index: index)
        let pauseAt = try JobFile.pauseAtStep(job)
        let rootURL = URL(fileURLWithPath: root ?? FileManager.default.currentDirectoryPath)
        if let threads { BLAS.setThreads(max(1, threads)) }
        if spec.task == .prune {
            do {
                let job = try PruneJob(spec: spec, root: rootURL)
                try PruneRunner(job: job, outputDir: URL(fileURLWithPath: out),
                                cacheDir: env["TUNA_CACHE_DIR"].map { URL(fileURLWithPath: $0) },
                                emit: { FileHandle.standardOutput.write(Data((JSONValue.object($0).canonicalJSON + "\n").utf8)) }).run()
            } catch {
                FileHandle.standardError.write(Data("tuna train: \(error)\n".utf8))
                throw ExitCode(1)
            }
            return
        }
        let parsed: TrainJob
        do { parsed = try TrainJob(spec: spec, root: rootURL) } catch { throw Failure("\(error)") }
        let stop = StopFlag()
        let signals = TerminationSignals([SIGTERM]) { stop.set() }
        defer { signals.cancel() }

        let trainer = NativeTrainer(
            job: parsed, outputDir: URL(fileURLWithPath: out),
            checkpointDir: (checkpointDir ?? env["TUNA_CHECKPOINT_DIR"]).map { URL(fileURLWithPath: $0) },
            resumeDir: (resumeDir ?? env["TUNA_RESUME_DIR"]).map { URL(fileURLWithPath: $0) },
            emit: { event in
                // unbuffered: one write per event line, so the worker sees each as it happens
                FileHandle.standardOutput.write(Data((JSONValue.object(event).canonicalJSON + "\n").utf8))
            },
            shouldStop: { stop.isSet }, pauseAtStep: pauseAt)
        do {
            _ = try trainer.run()
        } catch TrainError.interrupted {
            throw ExitCode(143)
        } catch {
            FileHandle.standardError.write(Data("tuna train: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

}

/// A job for `train` and `prepare`: a job JSON (what the worker writes, or one written by hand:
/// either way it is validated, which fills in what a hand-written one leaves out), or one
/// validated job of a YAML sweep spec (`--index` picks one when it expands to several).
enum JobFile {
    /// The step a job file asks its attempt to pause at (`pause_at_step`, set by the lease in a
    /// sweep whose ASHA promotes); nil for a YAML spec or a job file without one.
    static func pauseAtStep(_ path: String) throws -> Int? {
        guard path.hasSuffix(".json"), let data = FileManager.default.contents(atPath: path),
              let v = (try? JSONValue.parse(data))?[JobSpec.pauseAtStepKey], v != .null else { return nil }
        guard let step = v.intValue, step >= 1 else { throw Failure("\(path): \(JobSpec.pauseAtStepKey): \(v) is not a step >= 1") }
        return step
    }

    static func load(_ path: String, index: Int?) throws -> JobSpec {
        guard let data = FileManager.default.contents(atPath: path) else { throw Failure("cannot read \(path)") }
        let spec: JobSpec
        if path.hasSuffix(".json") {
            let json: JSONValue
            do { json = try JSONValue.parse(data) } catch { throw Failure("\(path): not JSON: \(error)") }
            do { spec = try JobValidator.spec(JobSpec.specOfJobFile(json)) } catch { throw Failure("\(path): \(error)") }
        } else {
            let plan: SweepPlan
            do { plan = try SweepSpec.plan(yaml: String(decoding: data, as: UTF8.self)) } catch let e as TunaError {
                throw Failure(e.description)
            }
            let i = index ?? 0
            guard plan.jobs.count == 1 || index != nil else {
                throw ValidationError("\(path) expands to \(plan.jobs.count) jobs; pick one with --index 0..<\(plan.jobs.count)")
            }
            guard plan.jobs.indices.contains(i) else { throw ValidationError("--index \(i) is outside 0..<\(plan.jobs.count)") }
            spec = plan.jobs[i].spec
        }
        guard spec.trainer != .command else {
            throw Failure("\(path): a command job; only native and torch jobs train adapters or prune experts")
        }
        return spec
    }
}

/// Set from the signal handler's queue, read by the training loop between steps.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}
