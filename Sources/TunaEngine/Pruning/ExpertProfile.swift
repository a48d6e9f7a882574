import Foundation

/// What the router and the experts did on calibration data, per layer and expert, and the
/// scores pruning ranks experts by. Only real (non-padding) tokens count.
///
///  - `frequency`: how often the expert is among a token's top-k (the published gpt-oss method);
///  - `reap` (router-weighted expert activation, Cerebras 2025): the mean over the tokens routed
///    to the expert of gate weight x ||expert output||;
///  - `easy_ep`: the sum over routed tokens of gate weight x ||expert output|| x (1 - cos(h, h'))
///    where h and h' are the residual stream before and after the MoE block: output-aware
///    importance weighted by how much the token's hidden state changes there (EASY-EP's token
///    contribution), so experts busy on tokens the layer barely touches count less.
/// Expert outputs are the exact expert function (interleaved clamped SwiGLU, biases), taken
/// from the forward pass itself.
public struct ExpertProfile: Sendable, Equatable {
    public enum Score: String, Sendable, CaseIterable { case frequency, reap, easyEP = "easy_ep" }

    public let layers: Int, experts: Int
    public var tokens = 0
    public var counts: [[Double]]    // top-k selections
    public var gateMass: [[Double]]  // Σ gate weight
    public var reapSum: [[Double]]   // Σ gate weight · ||y||
    public var easySum: [[Double]]   // Σ gate weight · ||y|| · (1 - cos(h, h'))
    public var maxNorm: [[Double]]   // max ||y|| over routed tokens

    public init(layers: Int, experts: Int) {
        self.layers = layers; self.experts = experts
        let zero = [[Double]](repeating: [Double](repeating: 0, count: experts), count: layers)
        counts = zero; gateMass = zero; reapSum = zero; easySum = zero; maxNorm = zero
    }

    /// Adds one layer's activations of one batch (`GptOssModel.forward(keep:)`).
    public mutating func add(layer l: Int, _ a: LayerActivations, attentionMask: [Int32], hidden c: Int, topK k: Int) {
        let n = attentionMask.count
        let routed = MoE.routing(experts: a.moe.topExperts, weights: a.moe.topWeights, tokens: n, experts: experts, topK: k)
        // the MoE block's output per token, to measure how much it moves the residual stream
        var moe = [Float](repeating: 0, count: n * c)
        var norms = [[Float]](repeating: [], count: experts)
        for e in 0..<experts where !routed[e].isEmpty {
            let y = a.moe.expertOutput[e]
            norms[e] = routed[e].indices.map { r in
                var s: Float = 0
                for i in 0..<c { s += y[r * c + i] * y[r * c + i] }
                return s.squareRoot()
            }
            for (r, item) in routed[e].enumerated() { for i in 0..<c { moe[item.token * c + i] += item.weight * y[r * c + i] } }
        }
        var change = [Double](repeating: 0, count: n)
        for t in 0..<n where attentionMask[t] != 0 {
            var dot = 0.0, hh = 0.0, oo = 0.0
            for i in 0..<c {
                let h = Double(a.afterAttention[t * c + i]), o = h + Double(moe[t * c + i])
                dot += h * o; hh += h * h; oo += o * o
            }
            change[t] = hh > 0 && oo > 0 ? 1 - dot / (hh.squareRoot() * oo.squareRoot()) : 0
        }
        for e in 0..<experts {
            for (r, item) in routed[e].enumerated() where attentionMask[item.token] != 0 {
                let w = Double(item.weight), y = Double(norms[e][r])
                counts[l][e] += 1; gateMass[l][e] += w; reapSum[l][e] += w * y
                easySum[l][e] += w * y * change[item.token]
                maxNorm[l][e] = max(maxNorm[l][e], y)
            }
        }
        if l == 0 { tokens += attentionMask.reduce(0) { $0 + Int($1) } }
    }

    public func scores(_ kind: Score) -> [[Double]] {
        switch kind {
        case .frequency: return counts
        case .reap: return zip(reapSum, counts).map { zip($0, $1).map { $1 > 0 ? $0 / $1 : 0 } }
        case .easyEP: return easySum
        }
    }

    /// Experts whose largest output norm exceeds `ratio` x the median of the layer's per-expert
    /// maxima: rare but extreme, and known to matter far beyond their routing frequency.
    public func superExperts(ratio: Double) -> [[Int]] {
        maxNorm.map { row in
            let median = row.sorted()[row.count / 2]
            return median > 0 ? row.indices.filter { row[$0] > ratio * median } : []
        }
    }

    /// The `n` experts each layer keeps, ascending: super experts first (unless disabled), then
    /// the best by score (ties: lower index). Errors on a bad n.
    public func keep(_ n: Int, by score: Score, topK: Int, keepSuperExperts: Bool = true, superRatio: Double = 10) throws -> [[Int]] {
        guard n >= topK, n <= experts else {
            throw EngineError.badInput(reason: "prune.keep: \(n) must be between the experts per token (\(topK)) and the experts per layer (\(experts))")
        }
        let s = scores(score), supers = keepSuperExperts ? superExperts(ratio: superRatio) : Array(repeating: [], count: layers)
        return try (0..<layers).map { l in
            guard supers[l].count <= n else {
                throw EngineError.badInput(reason: "layer \(l) has \(supers[l].count) super experts, more than prune.keep \(n); raise keep or set keep_super_experts: false")
            }
            let ranked = (0..<experts).filter { !supers[l].contains($0) }.sorted { (s[l][$0], -$0) > (s[l][$1], -$1) }
            return (supers[l] + ranked.prefix(n - supers[l].count)).sorted()
        }
    }

    /// Share of each layer's calibration routing mass (Σ gate weights) held by `kept`.
    public func massShare(kept: [[Int]]) -> [Double] {
        (0..<layers).map { l in
            let total = gateMass[l].reduce(0, +)
            return total > 0 ? kept[l].reduce(0) { $0 + gateMass[l][$1] } / total : 0
        }
    }

    // MARK: files (the profile is saved with the job and cached, so another N reuses it)

    public func save(to url: URL) throws {
        var w = SafeTensorsWriter(metadata: ["format": "tuna-expert-profile-1", "tokens": String(tokens)])
        for (name, m) in [("counts", counts), ("gate_mass", gateMass), ("reap_sum", reapSum), ("easy_sum", easySum), ("max_norm", maxNorm)] {
            try w.add(name, shape: [layers, experts], floats: m.flatMap { $0.map(Float.init) })
        }
        try w.write(to: url)
    }

    public static func load(from url: URL) throws -> ExpertProfile {
        let f = try SafeTensorsFile(path: url.path)
        guard f.metadata["format"] == "tuna-expert-profile-1", let tokens = Int(f.metadata["tokens"] ?? "") else {
            throw EngineError.badTensor(file: url.path, tensor: "__metadata__", reason: "not an expert profile")
        }
        let shape = try f.info("counts").shape
        guard shape.count == 2 else { throw EngineError.unexpectedTensor(file: url.path, tensor: "counts", reason: "not 2-D") }
        var p = ExpertProfile(layers: shape[0], experts: shape[1])
        p.tokens = tokens
        func read(_ name: String) throws -> [[Double]] {
            let v = try f.floats(name)
            guard v.count == shape[0] * shape[1] else { throw EngineError.unexpectedTensor(file: url.path, tensor: name, reason: "wrong size") }
            return (0..<shape[0]).map { l in (0..<shape[1]).map { Double(v[l * shape[1] + $0]) } }
        }
        p.counts = try read("counts"); p.gateMass = try read("gate_mass"); p.reapSum = try read("reap_sum")
        p.easySum = try read("easy_sum"); p.maxNorm = try read("max_norm")
        return p
    }
}
