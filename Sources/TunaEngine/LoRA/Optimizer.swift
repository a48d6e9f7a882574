import Foundation

/// torch.optim.AdamW (single-tensor path, fp32), step for step:
///   p *= 1 - lr·wd;  m = lerp(m, g, 1-β1);  v = β2 v + (1-β2) g²
///   p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + eps)
public struct AdamW: Sendable {
    public let beta1: Double, beta2: Double, eps: Double, weightDecay: Double
    public private(set) var stepCount = 0
    var m: [String: [Float]] = [:]
    var v: [String: [Float]] = [:]

    public init(beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 0.01) {
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
    }

    public mutating func step(_ adapter: inout LoRAAdapter, gradients: [String: [Float]], learningRate lr: Double) {
        stepCount += 1
        let decay = Float(1 - lr * weightDecay)
        let w1 = Float(1 - beta1), b2 = Float(beta2), w2 = Float(1 - beta2)
        let stepSize = Float(lr / (1 - pow(beta1, Double(stepCount))))
        let bc2Sqrt = Float((1 - pow(beta2, Double(stepCount))).squareRoot())
        let epsF = Float(eps)
        for name in adapter.tensors.keys.sorted() {
            guard let g = gradients[name] else { continue }
            var p = adapter.tensors[name]!
            var mt = m[name] ?? [Float](repeating: 0, count: p.count)
            var vt = v[name] ?? [Float](repeating: 0, count: p.count)
            for i in 0..<p.count {
                if weightDecay != 0 { p[i] *= decay }
                mt[i] += w1 * (g[i] - mt[i])        // torch's lerp for weight < 0.5
                vt[i] = vt[i] * b2 + w2 * g[i] * g[i]
                p[i] -= stepSize * (mt[i] / (vt[i].squareRoot() / bc2Sqrt + epsF))
            }
            adapter.tensors[name] = p
            m[name] = mt
            v[name] = vt
        }
    }

    /// Optimizer state for a checkpoint: the step and both moments, keyed like the adapter.
    public var state: (step: Int, m: [String: [Float]], v: [String: [Float]]) { (stepCount, m, v) }

    public mutating func restore(step: Int, m: [String: [Float]], v: [String: [Float]]) {
        self.stepCount = step; self.m = m; self.v = v
    }
}

/// torch.nn.utils.clip_grad_norm_: the global L2 norm over every tensor; when it exceeds
/// maxNorm every gradient is multiplied by maxNorm / (norm + 1e-6).
public enum GradientClipping {
    /// Returns the norm before clipping. maxNorm <= 0 only measures.
    @discardableResult
    public static func clip(_ gradients: inout [String: [Float]], maxNorm: Double) -> Double {
        var sum = 0.0
        for g in gradients.values { for x in g { sum += Double(x) * Double(x) } }
        let norm = sum.squareRoot()
        guard maxNorm > 0 else { return norm }
        let coef = maxNorm / (norm + 1e-6)
        if coef < 1 {
            let c = Float(coef)
            for key in gradients.keys { gradients[key] = gradients[key]!.map { $0 * c } }
        }
        return norm
    }
}

/// transformers' schedules (`get_scheduler`), as multipliers of the peak rate evaluated at the
/// number of optimizer steps already taken (LambdaLR: the first step uses step 0, so with
/// warmup the first update has rate 0, exactly as in the HF Trainer). Warmup is linear over
/// `warmupSteps` for every kind, `constant` included (HF's constant_with_warmup).
public struct LearningRateSchedule: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case constant, linear, cosine, cosineWithMinLR = "cosine_with_min_lr" }
    public let kind: Kind
    public let peak: Double, warmupSteps: Int, totalSteps: Int, minLRRatio: Double

    public init(kind: String, peak: Double, warmupSteps: Int, totalSteps: Int, minLRRatio: Double = 0) throws {
        guard let k = Kind(rawValue: kind) else {
            throw EngineError.badInput(reason: "train.scheduler: \(kind) is not one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.kind = k; self.peak = peak; self.warmupSteps = warmupSteps; self.totalSteps = totalSteps; self.minLRRatio = minLRRatio
    }

    /// HF TrainingArguments.get_warmup_steps: ceil(ratio · total).
    public static func warmupSteps(ratio: Double, totalSteps: Int) -> Int { Int((ratio * Double(totalSteps)).rounded(.up)) }

    public func rate(atStep s: Int) -> Double {
        if s < warmupSteps { return peak * Double(s) / Double(max(1, warmupSteps)) }
        let progress = Double(s - warmupSteps) / Double(max(1, totalSteps - warmupSteps))
        let factor: Double
        switch kind {
        case .constant: factor = 1
        case .linear: factor = max(0, Double(totalSteps - s) / Double(max(1, totalSteps - warmupSteps)))
        case .cosine: factor = max(0, 0.5 * (1 + cos(Double.pi * 0.5 * 2 * progress)))
        case .cosineWithMinLR:
            let cosine = 0.5 * (1 + cos(Double.pi * 0.5 * 2 * progress))
            factor = max(0, cosine * (1 - minLRRatio) + minLRRatio)
        }
        return peak * factor
    }
}
