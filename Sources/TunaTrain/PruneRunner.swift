import Foundation
import TunaCore
import TunaEngine
import TunaText

/// A `task: prune` job (docs/job-spec.md): profile the router on calibration data, score the
/// experts, evaluate every asked-for N by masking (one loaded model, no checkpoint written),
/// then write the checkpoint for the job's own N and a report.
public struct PruneJob: Sendable {
    public var modelPath: String
    public var dataset: DatasetSpec
    public var general: DatasetSpec?
    public var keep: Int
    public var alsoEvaluate: [Int]
    public var score: ExpertProfile.Score
    public var keepSuperExperts: Bool
    public var superRatio: Double
    public var calibrationExamples: Int
    public var maxSeqLen: Int
    public var writeCheckpoint: Bool

    /// Every N to evaluate (the job's own and `also_evaluate`), once each, largest first: the
    /// order of the `eval` / `prune_eval` events.
    public var evaluations: [Int] { Array(Set([keep] + alsoEvaluate)).sorted(by: >) }

    public init(spec: JobSpec, root: URL) throws {
        guard spec.task == .prune, let model = spec.model, let ds = spec.dataset, let p = spec.prune else {
            throw TrainError.badJob("a prune job needs model, dataset and prune (`task: prune`)")
        }
        // model and dataset read exactly like a LoRA job's (same resolution of relative paths)
        modelPath = TrainJob.resolve(model, root: root)
        dataset = try TrainJob.dataset(ds, root: root, seed: p.seed, maxSeqLen: p.maxSeqLen)
        keep = p.keep
        alsoEvaluate = p.alsoEvaluate ?? []
        guard let s = ExpertProfile.Score(rawValue: p.score.rawValue) else {
            throw TrainError.badJob("prune.score: \(p.score.rawValue) is not one this trainer computes")
        }
        score = s
        keepSuperExperts = p.keepSuperExperts
        superRatio = p.superExpertRatio
        calibrationExamples = p.calibrationExamples
        maxSeqLen = p.maxSeqLen
        writeCheckpoint = p.writeCheckpoint
        if let g = p.general {
            var spec = try TrainJob.dataset(g, root: root, seed: p.seed, maxSeqLen: p.maxSeqLen)
            spec.valFraction = 0  // the whole general set is evaluation data
            general = spec
        }
    }
}

public final class PruneRunner {
    let job: PruneJob
    let outputDir: URL
    let cacheDir: URL?
    let emit: NativeTrainer.Emit

    public init(job: PruneJob, outputDir: URL, cacheDir: URL?, emit: @escaping NativeTrainer.Emit) {
        self.job = job; self.outputDir = outputDir; self.cacheDir = cacheDir; self.emit = emit
    }

    public func run() throws {
        let started = Date()
        let modelDir = URL(fileURLWithPath: job.modelPath)
        let checkpoint = try GptOssCheckpoint(directory: modelDir)
        let model = try GptOssModel(checkpoint: checkpoint, residency: NativeTrainer.residency(for: checkpoint))
        let cfg = model.config
        for n in [job.keep] + job.alsoEvaluate where n < cfg.topK || n > cfg.numLocalExperts {
            throw TrainError.badJob("prune.keep: \(n) must be between the experts per token (\(cfg.topK)) and the experts per layer (\(cfg.numLocalExperts))")
        }
        // the data as `tuna prepare` writes it for the torch trainer (PrunePlan: one loader)
        let (calibration, heldOut, generalBatches) = try PrunePlan(job: job).batches()

        let profile = try loadOrProfile(model, calibration)
        let evaluations = job.evaluations
        // every N's experts, then one pass over the evaluation data for all of them (and the
        // unpruned model, index 0), so the unpruned forward runs once per batch, not once per N
        var keeps: [[[Int]]] = []
        for n in evaluations {
            do { keeps.append(try profile.keep(n, by: job.score, topK: cfg.topK, keepSuperExperts: job.keepSuperExperts, superRatio: job.superRatio)) }
            catch let e as EngineError { throw TrainError.badJob(e.description.replacingOccurrences(of: "bad input: ", with: "")) }
        }
        let masks: [[[Bool]]?] = [nil] + keeps.map { keep in keep.map { k in (0..<cfg.numLocalExperts).map { k.contains($0) } } }
        let domain = try scores(model, masks: masks, heldOut)
        let generalScores = generalBatches.isEmpty ? nil : try scores(model, masks: masks, generalBatches)
        emit(["event": TrainerEvent.Kind.baseline.json, "loss": NativeTrainer.number(domain[0].loss),
              "general_loss": generalScores.map { NativeTrainer.number($0[0].loss) } ?? .null])

        var kept: [[Int]] = []
        for (i, n) in evaluations.enumerated() {
            let keep = keeps[i]
            let r = Evaluation(domain: domain[i + 1], general: generalScores?[i + 1])
            let share = profile.massShare(kept: keep)
            var event: [String: JSONValue] = [
                "event": (n == job.keep ? TrainerEvent.Kind.eval : .pruneEval).json, "keep": .int(n),
                "loss": NativeTrainer.number(r.domain.loss), "tokens": .int(r.domain.tokens),
                "kl": NativeTrainer.number(r.domain.kl), "top1_agreement": NativeTrainer.number(r.domain.top1),
                "pruned_hit_share": NativeTrainer.number(r.domain.prunedHits),
                "routing_mass_kept": NativeTrainer.number(share.reduce(0, +) / Double(max(share.count, 1))),
            ]
            if let g = r.general {
                event["general_loss"] = NativeTrainer.number(g.loss); event["general_kl"] = NativeTrainer.number(g.kl)
                event["general_top1_agreement"] = NativeTrainer.number(g.top1)
            }
            emit(event)
            if n == job.keep { kept = keep }
        }

        try FileManager.default.createDirectory(at: outputDir, withIntermediateDirectories: true)
        try profile.save(to: outputDir.appendingPathComponent("expert_profile.safetensors"))
        var report: [String: JSONValue] = [
            "keep": .int(job.keep), "score": .string(job.score.rawValue), "calibration_tokens": .int(profile.tokens),
            "layers": .array(zip(kept, profile.massShare(kept: kept)).enumerated().map { l, pair in
                ["layer": .int(l), "kept": .array(pair.0.map { .int($0) }), "routing_mass_share": .number(pair.1),
                 "super_experts": .array(profile.superExperts(ratio: job.superRatio)[l].map { .int($0) })]
            }),
            "note": "expert LoRA adapters of the base model are tied to its expert order and do not apply to this checkpoint; attention adapters do",
        ]
        if job.writeCheckpoint {
            let sizes = try ExpertPruner.write(base: checkpoint, keep: kept, to: outputDir.appendingPathComponent("model"))
            report["parameters_before"] = .int(sizes.before.parameters); report["parameters_after"] = .int(sizes.after.parameters)
            report["bytes_before"] = .int(sizes.before.bytes); report["bytes_after"] = .int(sizes.after.bytes)
        }
        try Data(JSONValue.object(report).canonicalJSON.utf8).write(to: outputDir.appendingPathComponent("prune_report.json"))
        var done = report
        done["event"] = TrainerEvent.Kind.done.json; done["layers"] = nil; done["seconds"] = .number(Date().timeIntervalSince(started))
        emit(done)
    }

    /// The calibration profile, from the cache when this model and data were profiled before.
    func loadOrProfile(_ model: GptOssModel, _ batches: [Batch]) throws -> ExpertProfile {
        let key = cacheKey(model)
        let cached = cacheDir?.appendingPathComponent("expert-profile-\(key).safetensors")
        if let cached, let p = try? ExpertProfile.load(from: cached) {
            emit(["event": TrainerEvent.Kind.pruneProfile.json, "tokens": .int(p.tokens), "cached": true])
            return p
        }
        let start = Date()
        var profile = ExpertProfile(layers: model.config.numHiddenLayers, experts: model.config.numLocalExperts)
        for b in batches {
            _ = try model.forward(b) { l, a in
                profile.add(layer: l, a, attentionMask: b.attentionMask, hidden: model.config.hiddenSize, topK: model.config.topK)
            }
        }
        emit(["event": TrainerEvent.Kind.pruneProfile.json, "tokens": .int(profile.tokens), "cached": false, "seconds": .number(Date().timeIntervalSince(start))])
        if let cached, let dir = cacheDir {
            try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let tmp = dir.appendingPathComponent(".\(cached.lastPathComponent).\(getpid())")
            if (try? profile.save(to: tmp)) != nil { rename(tmp.path, cached.path) }
        }
        return profile
    }

    /// Model files (names, sizes, mtimes) + the calibration data and its settings.
    func cacheKey(_ model: GptOssModel) -> String {
        var text = "\(job.dataset)|\(job.calibrationExamples)|"
        let dir = URL(fileURLWithPath: job.modelPath)
        for f in ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted() {
            let a = try? FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent(f).path)
            text += "\(f):\((a?[.size] as? NSNumber)?.intValue ?? 0):\((a?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)|"
        }
        if let a = try? FileManager.default.attributesOfItem(atPath: job.dataset.path) {
            text += "\((a[.size] as? NSNumber)?.intValue ?? 0):\((a[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)"
        }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a: a cache key, not a security boundary
        for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return String(h, radix: 16)
    }

    struct Scores { var loss: Double; var tokens: Int; var kl: Double; var top1: Double; var prunedHits: Double }
    struct Evaluation { var domain: Scores; var general: Scores? }

    /// For each entry of `masks` (nil: the unpruned model): loss on `batches`, and against the
    /// unpruned model the mean next-token KL(base || pruned) and top-1 agreement at scored
    /// positions, and the share of the base model's expert choices that hit removed experts.
    func scores(_ model: GptOssModel, masks: [[[Bool]]?], _ batches: [Batch]) throws -> [Scores] {
        var loss = [Double](repeating: 0, count: masks.count), kl = loss
        var agree = [Int](repeating: 0, count: masks.count), hits = agree
        var tokens = 0, choices = 0
        let k = model.config.topK
        for b in batches {
            var routing: [Int: [Int32]] = [:]
            let base = try model.forward(b) { l, a in routing[l] = a.moe.topExperts }
            guard let labels = b.labels else { continue }
            var positions: [(row: Int, t: Int, target: Int)] = []
            for row in 0..<b.batchSize {
                for t in 0..<(b.length - 1) where labels[row * b.length + t + 1] != Batch.ignoreIndex {
                    positions.append((row, t, Int(labels[row * b.length + t + 1])))
                }
            }
            let baseLog = positions.map { logSoftmax(base[$0.row, $0.t]) }
            tokens += positions.count
            for experts in routing.values { choices += experts.indices.filter { b.attentionMask[$0 / k] != 0 }.count }
            for (m, mask) in masks.enumerated() {
                let pruned = mask == nil ? base : try model.forward(b, expertMasks: mask)
                for (i, pos) in positions.enumerated() {
                    let p = baseLog[i], q = mask == nil ? p : logSoftmax(pruned[pos.row, pos.t])
                    loss[m] -= q[pos.target]
                    var s = 0.0
                    for j in 0..<p.count where p[j] > -80 { s += exp(p[j]) * (p[j] - q[j]) }
                    kl[m] += s
                    if argmax(p) == argmax(q) { agree[m] += 1 }
                }
                if let mask {
                    for (l, experts) in routing {
                        for (i, e) in experts.enumerated() where b.attentionMask[i / k] != 0 && !mask[l][Int(e)] { hits[m] += 1 }
                    }
                }
            }
        }
        let n = Double(max(tokens, 1))
        return masks.indices.map { m in
            Scores(loss: tokens > 0 ? loss[m] / n : .nan, tokens: tokens, kl: kl[m] / n, top1: Double(agree[m]) / n,
                   prunedHits: choices > 0 ? Double(hits[m]) / Double(choices) : 0)
        }
    }

    func logSoftmax(_ row: ArraySlice<Float>) -> [Double] {
        let m = Double(row.max() ?? 0)
        var sum = 0.0
        for x in row { sum += exp(Double(x) - m) }
        let lse = m + log(sum)
        return row.map { Double($0) - lse }
    }

    func argmax(_ v: [Double]) -> Int { v.indices.max { v[$0] < v[$1] } ?? 0 }
}
