// EngineBench: native gpt-oss forward throughput, achieved GFLOP/s, and OpenBLAS's own sgemm
// GFLOP/s measured in the same process. Driven by Benchmarks/engine/run.sh (see README.md).
//
//   EngineBench <checkpoint-dir> [--threads N] [--repeats R] [--streaming] [--logits-out FILE]
// Input tokens come from <checkpoint-dir>/inputs.safetensors ("input_ids" [B, T]) so the
// PyTorch side runs exactly the same batch.
import CBLAS
import Foundation
import TunaEngine

struct Options {
    var directory = ""
    var threads = 2
    var repeats = 3
    var streaming = false
    var logitsOut: String?
}

func parse() -> Options? {
    var o = Options()
    var args = CommandLine.arguments.dropFirst()
    while let a = args.popFirst() {
        switch a {
        case "--threads": o.threads = Int(args.popFirst() ?? "") ?? o.threads
        case "--repeats": o.repeats = Int(args.popFirst() ?? "") ?? o.repeats
        case "--streaming": o.streaming = true
        case "--logits-out": o.logitsOut = args.popFirst()
        default: o.directory = a
        }
    }
    return o.directory.isEmpty ? nil : o
}

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// Useful matmul FLOPs of one forward (2 per multiply-add). Attention counts only the
/// (query, key) pairs the mask allows (causal triangle, or the window for sliding layers), so
/// GFLOP/s is not inflated by the masked-out work any dense implementation would do.
func forwardFLOPs(_ c: GptOssConfig, batch b: Int, length t: Int) -> Double {
    let n = Double(b * t), C = Double(c.hiddenSize), D = Double(c.resolvedHeadDim)
    let H = Double(c.numAttentionHeads), KVH = Double(c.kvHeads), E = Double(c.numLocalExperts)
    let I = Double(c.intermediateSize), K = Double(c.topK), V = Double(c.vocabSize)
    let projections = 2 * n * C * (2 * H * D + 2 * KVH * D)
    let moe = 2 * n * C * E + 2 * n * K * (C * 2 * I + I * C)
    var total = 2 * n * C * V
    for layer in 0..<c.numHiddenLayers {
        let window = c.isSliding(layer: layer) ? c.slidingWindow ?? t : t
        let pairs = (0..<t).reduce(0) { $0 + min($1 + 1, window) }  // visible keys per query, summed
        total += projections + moe + 2 * 2 * Double(b) * H * D * Double(pairs)  // q k^T and p v
    }
    return total
}

func run() throws {
    guard let o = parse() else {
        print("usage: EngineBench <checkpoint-dir> [--threads N] [--repeats R] [--streaming] [--logits-out FILE]")
        exit(2)
    }
    BLAS.setThreads(o.threads)
    let dir = URL(fileURLWithPath: o.directory)
    let inputs = try SafeTensorsFile(path: dir.appendingPathComponent("inputs.safetensors").path)
    let shape = try inputs.info("input_ids").shape
    let flat = try inputs.integers("input_ids").map { Int32($0) }
    let rows = (0..<shape[0]).map { Array(flat[($0 * shape[1])..<(($0 + 1) * shape[1])]) }
    let batch = try Batch(tokens: rows)

    let t0 = now()
    let model = try GptOssModel(directory: dir, residency: o.streaming ? .streaming : .resident)
    let loadSeconds = now() - t0
    var times: [Double] = []
    var logits: Logits?
    for _ in 0..<o.repeats {
        let s = now()
        logits = try model.forward(batch)
        times.append(now() - s)
    }
    times.sort()
    let median = times[times.count / 2]
    let tokens = batch.batchSize * batch.length
    let flops = forwardFLOPs(model.config, batch: batch.batchSize, length: batch.length)
    let c = model.config
    let perExpert = tokens * c.topK / c.numLocalExperts
    let sgemmSquare = BLASProbe.sgemmGFLOPs(m: 1024, n: 1024, k: 1024)
    let sgemmExpert = BLASProbe.sgemmGFLOPs(m: perExpert, n: 2 * c.intermediateSize, k: c.hiddenSize)
    if let path = o.logitsOut, let logits {
        var w = SafeTensorsWriter()
        try w.add("logits", shape: [logits.batchSize, logits.length, logits.vocabSize], floats: logits.values)
        try w.write(to: URL(fileURLWithPath: path))
    }
    let peak = Double(Memory.peakRSS() ?? 0) / 1048576
    // fp32 size of all weights once dequantized (what .resident holds), for the RSS comparison
    let (C, I, E, V) = (c.hiddenSize, c.intermediateSize, c.numLocalExperts, c.vocabSize)
    let qkvo = 2 * C * c.numAttentionHeads * c.resolvedHeadDim + 2 * C * c.kvHeads * c.resolvedHeadDim
    let perLayer = qkvo + E * (3 * C * I + 2 * I + C + C + 1) + 4 * C
    let fp32Weights = Double(4 * (c.numHiddenLayers * perLayer + 2 * V * C + C)) / 1048576
    let report: [String: Any] = [
        "engine": "TunaEngine", "mode": o.streaming ? "streaming" : "resident", "threads": o.threads,
        "tokens": tokens, "load_s": loadSeconds, "forward_s_median": median, "forward_s_all": times,
        "tokens_per_s": Double(tokens) / median, "gflop_per_forward": flops / 1e9,
        "achieved_gflops": flops / median / 1e9, "sgemm_gflops_1024cube": sgemmSquare,
        "sgemm_gflops_expert_shape": sgemmExpert, "expert_shape": [perExpert, c.hiddenSize, 2 * c.intermediateSize],
        "peak_rss_mib": peak, "fp32_weights_mib": fp32Weights,
    ]
    let json = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
    print(String(decoding: json, as: UTF8.self))
}

do { try run() } catch {
    FileHandle.standardError.write(Data("EngineBench: \(error)\n".utf8))
    exit(1)
}
