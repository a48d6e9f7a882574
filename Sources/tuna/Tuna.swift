import ArgumentParser

/// `tuna`: one executable for the coordinator, the worker daemon, and the commands people type.
@main
struct Tuna: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tuna",
        abstract: "LoRA fine-tuning sweeps of Mixture-of-Experts models across a fleet of GPU boxes.",
        subcommands: [
            CoordinatorCommand.self, WorkerCommand.self,
            SubmitCommand.self, WatchCommand.self, SweepsCommand.self, JobsCommand.self, ResultsCommand.self, LogsCommand.self,
            FetchCommand.self, CancelCommand.self, RetryCommand.self, WorkersCommand.self,
            VersionCommand.self, ContractCommand.self, TokenizeCommand.self, EvalCommand.self, TrainCommand.self, MergeCommand.self, InitModelCommand.self, PrepareCommand.self,
        ]
    )
}
