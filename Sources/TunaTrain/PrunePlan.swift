import Foundation
import TunaCore
import TunaEngine
import TunaText

/// Everything about a `task: prune` job that follows from the job alone: its three data sets,
/// tokenized and truncated exactly as the native runner uses them, and the N it evaluates.
/// `PruneRunner` runs it; `tuna prepare` writes it out so the torch trainer
/// (worker/tuna_torch/prune.py) profiles and evaluates exactly the same token sequences.
public struct PrunePlan {
    /// Rows per batch, for calibration and evaluation alike.
    public static let batchSize = 8

    public let job: PruneJob
    /// The first `calibration_examples` rows of the data set's training split, in order.
    public let calibration: [RenderedExample]
    /// The validation split: the held-out domain evaluation (never overlaps the calibration).
    public let heldOut: [RenderedExample]
    /// `prune.general`, whole (empty when the job has none).
    public let general: [RenderedExample]

    public init(job: PruneJob) throws {
        self.job = job
        let tokenizer: Tokenizer
        do { tokenizer = try Tokenizer.load(fromCheckpoint: URL(fileURLWithPath: job.modelPath)) } catch {
            throw TrainError.badData("tokenizer: \(error)")
        }
        let data: LoadedDataset
        do { data = try loadDataset(job.dataset, tokenizer: tokenizer) } catch { throw TrainError.badData("\(error)") }
        guard !data.train.isEmpty, !data.validation.isEmpty else {
            throw TrainError.badData("\(job.dataset.path): pruning needs calibration and held-out rows (dataset.val_fraction > 0)")
        }
        calibration = Array(data.train.prefix(job.calibrationExamples))
        heldOut = data.validation
        if let g = job.general {
            do { general = try loadDataset(g, tokenizer: tokenizer).train } catch { throw TrainError.badData("prune.general: \(error)") }
        } else {
            general = []
        }
    }

    /// The batches the runner profiles and evaluates: in file order, `batchSize` rows each,
    /// right-padded (`Batching.validation`, which also drops rows of fewer than 2 tokens).
    public func batches() throws -> (calibration: [Batch], heldOut: [Batch], general: [Batch]) {
        (try Batching.validation(calibration, batchSize: Self.batchSize),
         try Batching.validation(heldOut, batchSize: Self.batchSize),
         try Batching.validation(general, batchSize: Self.batchSize))
    }

    /// Writes the plan for another trainer:
    ///   calibration.jsonl, validation.jsonl, general.jsonl   one row per line, as `TrainingPlan`
    ///                    writes them: {"tokens": [...], "mask": [0|1, ...]} (mask 1 = scored by
    ///                    the evaluation loss); the reader batches them as `batches()` does
    ///   plan.json        the prune settings as the runner reads them (defaults filled in) and
    ///                    the N to evaluate, in the runner's order
    public func write(to dir: URL) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try TrainingPlan.jsonLines(calibration).write(to: dir.appendingPathComponent("calibration.jsonl"))
        try TrainingPlan.jsonLines(heldOut).write(to: dir.appendingPathComponent("validation.jsonl"))
        try TrainingPlan.jsonLines(general).write(to: dir.appendingPathComponent("general.jsonl"))
        let doc: JSONValue = [
            "format": .string(PreparedPlan.prune.format), "task": "prune",
            "keep": .int(job.keep), "also_evaluate": .array(job.alsoEvaluate.map { .int($0) }),
            "evaluations": .array(job.evaluations.map { .int($0) }),
            "score": .string(job.score.rawValue), "keep_super_experts": .bool(job.keepSuperExperts),
            "super_expert_ratio": .number(job.superRatio), "calibration_examples": .int(job.calibrationExamples),
            "max_seq_len": .int(job.maxSeqLen), "write_checkpoint": .bool(job.writeCheckpoint),
            "batch_size": .int(Self.batchSize),
            "calibration_rows": .int(calibration.count), "held_out_rows": .int(heldOut.count), "general_rows": .int(general.count),
        ]
        try Data(doc.canonicalJSON.utf8).write(to: dir.appendingPathComponent("plan.json"))
    }
}
