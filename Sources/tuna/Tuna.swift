import ArgumentParser
import Foundation

/// `tuna`: one executable for the coordinator, the worker daemon, and the commands people type.
@main
struct Tuna: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tuna",
        abstract: "LoRA fine-tuning sweeps of Mixture-of-Experts models across a fleet of GPU boxes.",
        subcommands: [
            CoordinatorCommand.self, WorkerCommand.self,
            SubmitCommand.self, WatchCommand.self, SweepsCommand.self, JobsCommand.self, ResultsCommand.self, LogsCommand.self,
            FetchCommand.self, SamplesCommand.self, ExportCommand.self, PlotCommand.self, CancelCommand.self, RetryCommand.self, SweepCommand.self, WorkersCommand.self, StatusCommand.self, AuditCommand.self, GCCommand.self, BackupCommand.self, RestoreCommand.self,
            VersionCommand.self, ContractCommand.self, TokenizeCommand.self, EvalCommand.self, GenerateCommand.self, GradeCommand.self, TrainCommand.self, MergeCommand.self, InitModelCommand.self, PrepareCommand.self,
        ]
    )

    /// Exit codes: 0 success; 1 the command failed (one line saying why, no usage text);
    /// 2 bad usage (the message and the usage). ArgumentParser's own code for bad usage is 64.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand { try await asyncCommand.run() } else { try command.run() }
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}
