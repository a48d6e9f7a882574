import ArgumentParser
import Foundation
import TunaCore
import TunaTrain

/// `tuna prepare`: the native trainer's view of a job, written out for another trainer (the
/// torch trainer reads it): token ids and loss masks of the train/validation split, the
/// micro-batches of every optimizer step, the learning rates, and the initial adapter. For a
/// `task: prune` job: the calibration, held-out and general rows and the prune settings
/// (`PrunePlan`, the data the native prune runner uses).
struct PrepareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "prepare",
        abstract: "Tokenize and plan a job exactly as the native trainer would (train.jsonl, validation.jsonl, plan.json, init_adapter/, and eval.json for a job with eval; for a prune job calibration.jsonl, validation.jsonl, general.jsonl, plan.json).")

    @Argument(help: "A job JSON or a sweep spec YAML.") var job: String
    @Option(help: "Output directory.") var out: String
    @Option(help: "With a YAML spec that expands to several jobs: which one (0-based).") var index: Int?
    @Option(help: "Relative model and data paths are resolved against this directory.") var root: String?

    func run() throws {
        let spec = try JobFile.load(job, index: index)
        let rootURL = URL(fileURLWithPath: root ?? FileManager.default.currentDirectoryPath)
        if spec.task == .prune {
            do {
                let plan = try PrunePlan(job: try PruneJob(spec: spec, root: rootURL))
                try plan.write(to: URL(fileURLWithPath: out))
                print("{\"calibration_examples\": \(plan.calibration.count), \"validation_examples\": \(plan.heldOut.count), \"general_examples\": \(plan.general.count)}")
            } catch { throw Failure("\(error)") }
            return
        }
        do {
            let parsed = try TrainJob(spec: spec, root: rootURL)
            let plan = try TrainingPlan(job: parsed)
            try plan.write(to: URL(fileURLWithPath: out))
            if let settings = parsed.eval {
                try TaskEvaluation(job: parsed, settings: settings).writePrompts(to: URL(fileURLWithPath: out).appendingPathComponent("eval.json"))
            }
            print("{\"train_examples\": \(plan.data.train.count), \"validation_examples\": \(plan.data.validation.count), \"steps\": \(plan.totalSteps)}")
        } catch { throw Failure("\(error)") }
    }
}
