import Foundation
import TunaCore

/// How a worker starts a job's program. Every trainer speaks the same contract
/// (docs/trainer-contract.md): the job spec as a JSON file (`TUNA_JOB`), an output directory
/// (`TUNA_OUTPUT_DIR`), JSON lines on stdout; the worker does everything else.
public protocol Trainer: Sendable {
    /// The name jobs ask for (`trainer: command`).
    var name: String { get }
    /// The argv that runs the job described by `spec` (also written to `jobFile`).
    func argv(spec: JobSpec, jobFile: URL, outputDir: URL) throws -> [String]
}

/// Runs the program the spec names in `command`, as given.
public struct CommandTrainer: Trainer {
    public init() {}
    public var name: String { "command" }

    public func argv(spec: JobSpec, jobFile: URL, outputDir: URL) throws -> [String] {
        guard let argv = spec.command, !argv.isEmpty else {
            throw TunaError.invalid("the job has no `command` to run")
        }
        return argv
    }
}

/// Runs another executable with the job file and output directory as arguments: the native
/// trainer is `tuna train JOB.json --out DIR` in a child process (isolation, cancellation,
/// memory accounting), and the torch trainer is a Python module.
public struct ExecutableTrainer: Trainer {
    public let name: String
    public let prefix: [String]

    public init(name: String, prefix: [String]) { self.name = name; self.prefix = prefix }

    public func argv(spec: JobSpec, jobFile: URL, outputDir: URL) throws -> [String] {
        prefix + [jobFile.path, "--out", outputDir.path]
    }
}
