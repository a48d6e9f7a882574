import Foundation

/// Writes a checkpoint that keeps only some experts of every layer, with no requantization:
/// the router's weight and bias rows and every `mlp.experts.*` tensor (MXFP4 blocks and
/// scales, dense weights, biases) are sliced along their leading expert dimension, in the
/// same (ascending) order, and `num_local_experts` is updated; everything else is copied
/// byte for byte. Expert LoRA adapters trained on the base are tied to the old expert order,
/// so they do not carry over (attention adapters do).
public enum ExpertPruner {
    public struct Sizes: Sendable, Equatable {
        /// Logical parameters (an MXFP4 byte holds two weights; scales are not parameters).
        public var parameters: Int
        public var bytes: Int
    }

    public static func sizes(_ store: TensorStore) throws -> Sizes {
        var p = 0, b = 0
        for name in store.names {
            let info = try store.info(name)
            let bytes = info.elementCount * info.dtype.size
            b += bytes
            if name.hasSuffix("_scales") { continue }
            p += name.hasSuffix("_blocks") ? 2 * bytes : info.elementCount
        }
        return Sizes(parameters: p, bytes: b)
    }

    @discardableResult
    public static func write(base: GptOssCheckpoint, keep: [[Int]], to out: URL) throws -> (before: Sizes, after: Sizes) {
        let cfg = base.config, e = cfg.numLocalExperts
        guard keep.count == cfg.numHiddenLayers else {
            throw EngineError.badInput(reason: "prune: \(keep.count) keep lists for \(cfg.numHiddenLayers) layers")
        }
        let n = keep.first?.count ?? 0
        for (l, k) in keep.enumerated() {
            guard k.count == n, Set(k).count == n, k.allSatisfy({ (0..<e).contains($0) }), k == k.sorted() else {
                throw EngineError.badInput(reason: "prune: layer \(l) keeps \(k); every layer must keep \(n) distinct experts in ascending order")
            }
        }
        guard n >= cfg.topK else {
            throw EngineError.badInput(reason: "prune: keeping \(n) experts, fewer than the \(cfg.topK) experts per token")
        }
        try DerivedCheckpoint.refuseBase(out, base: base.directory, what: "prune")
        let store = base.store
        var writer = SafeTensorsWriter(metadata: ["format": "pt", "pruned_by": "tuna", "experts_kept": String(n)])
        for name in store.names {
            let info = try store.info(name)
            let bytes = try store.file(for: name).withRawBytes(name) { Array($0) }
            guard let layer = expertLayer(name) else {
                try writer.add(name, dtype: info.dtype, shape: info.shape, bytes: bytes)
                continue
            }
            guard info.shape.first == e else {
                throw EngineError.unexpectedTensor(file: try store.file(for: name).path, tensor: name,
                                                   reason: "leading dimension \(info.shape.first ?? 0), expected \(e) experts")
            }
            let per = bytes.count / e
            var sliced = [UInt8](); sliced.reserveCapacity(per * n)
            for x in keep[layer] { sliced += bytes[(x * per)..<((x + 1) * per)] }
            try writer.add(name, dtype: info.dtype, shape: [n] + info.shape.dropFirst(), bytes: sliced)
        }
        try DerivedCheckpoint.writeWeights(writer, to: out, base: base.directory)
        try writeConfig(from: base.directory, to: out, experts: n)
        return (try sizes(store), try sizes(TensorStore(directory: out)))
    }

    /// The layer of a tensor with a leading expert dimension: the router's weight and bias and
    /// everything under `mlp.experts.`.
    static func expertLayer(_ name: String) -> Int? {
        let parts = name.split(separator: ".")
        guard parts.count >= 5, parts[0] == "model", parts[1] == "layers", let l = Int(parts[2]), parts[3] == "mlp" else { return nil }
        if parts[4] == "experts" { return l }
        if parts[4] == "router", parts.count == 6, parts[5] == "weight" || parts[5] == "bias" { return l }
        return nil
    }

    /// config.json with every alias of the expert counts updated (and checked: top-k must not
    /// exceed the experts kept).
    static func writeConfig(from src: URL, to dst: URL, experts n: Int) throws {
        try DerivedCheckpoint.writeConfig(from: src, to: dst) { o in
            o["num_local_experts"] = n
            if o["num_experts"] != nil { o["num_experts"] = n }
            for alias in ["num_experts_per_tok", "experts_per_token"] where o[alias] != nil {
                guard let k = (o[alias] as? NSNumber)?.intValue, k <= n else {
                    throw EngineError.badConfig(file: src.appendingPathComponent("config.json").path, reason: "\(alias) exceeds the \(n) experts kept")
                }
            }
        }
    }
}
