// TrainBench: native LoRA training throughput of TunaEngine (forward + backward + clip + AdamW:
// the work of one optimizer step of `tuna train` with one micro-batch) and its peak RSS. Driven
// by Benchmarks/train/run.sh -> bench.py (see README.md); prints one JSON line. tokens_per_s is
// tokens per step over the fastest timed step (the box is shared; min is the least disturbed).
//
//   TrainBench <checkpoint-dir> --adapter DIR | (--rank R --alpha A --targets attn|all-linear
//              [--expert-layers 2,3])  [--batch B] [--seq T] [--steps S] [--warmup W]
//              [--threads N] [--recompute] [--lr X] [--max-grad-norm X]
//
// Tokens come from <checkpoint-dir>/inputs.safetensors ("input_ids" [B', T'], cut to [B, T])
// and are their own labels, so the PyTorch side trains on exactly the same batch. With
// --adapter the initial LoRA weights are PEFT's own save_pretrained output, so both sides
// start from the same adapter and their first-step losses and gradient norms can be compared.
import CBLAS
import Foundation
import TunaEngine

struct Options {
    var directory = ""
    var adapter: String?
    var rank = 16
    var alpha = 32.0
    var targets = "attn"
    var expertLayers: [Int] = []
    var batch = 0   // 0: all rows of inputs.safetensors
    var seq = 0     // 0: the full length
    var steps = 3
    var warmup = 1
    var threads = 2
    var recompute = false
    var lr = 1e-3
    var maxGradNorm = 1.0
}

func parse() -> Options? {
    var o = Options()
    var args = CommandLine.arguments.dropFirst()
    while let a = args.popFirst() {
        switch a {
        case "--adapter": o.adapter = args.popFirst()
        case "--rank": o.rank = Int(args.popFirst() ?? "") ?? o.rank
        case "--alpha": o.alpha = Double(args.popFirst() ?? "") ?? o.alpha
        case "--targets": o.targets = args.popFirst() ?? o.targets
        case "--expert-layers": o.expertLayers = (args.popFirst() ?? "").split(separator: ",").compactMap { Int($0) }
        case "--batch": o.batch = Int(args.popFirst() ?? "") ?? o.batch
        case "--seq": o.seq = Int(args.popFirst() ?? "") ?? o.seq
        case "--steps": o.steps = Int(args.popFirst() ?? "") ?? o.steps
        case "--warmup": o.warmup = Int(args.popFirst() ?? "") ?? o.warmup
        case "--threads": o.threads = Int(args.popFirst() ?? "") ?? o.threads
        case "--recompute": o.recompute = true
        case "--lr": o.lr = Double(args.popFirst() ?? "") ?? o.lr
        case "--max-grad-norm": o.maxGradNorm = Double(args.popFirst() ?? "") ?? o.maxGradNorm
        default: o.directory = a
        }
    }
    return o.directory.isEmpty ? nil : o
}

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
func mib(_ bytes: Int?) -> Double { Double(bytes ?? 0) / 1048576 }
/// CPU seconds of the whole process (all threads): robust to waiting for a core on a shared box.
func cpuNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func run() throws {
    guard let o = parse() else {
        print("usage: TrainBench <checkpoint-dir> [--adapter DIR | --rank R --alpha A --targets attn|all-linear "
              + "--expert-layers L,L] [--batch B] [--seq T] [--steps S] [--warmup W] [--threads N] [--recompute]")
        exit(2)
    }
    BLAS.setThreads(o.threads)
    let dir = URL(fileURLWithPath: o.directory)
    let inputs = try SafeTensorsFile(path: dir.appendingPathComponent("inputs.safetensors").path)
    let shape = try inputs.info("input_ids").shape
    let flat = try inputs.integers("input_ids").map { Int32($0) }
    let b = o.batch > 0 ? min(o.batch, shape[0]) : shape[0], t = o.seq > 0 ? min(o.seq, shape[1]) : shape[1]
    let rows = (0..<b).map { Array(flat[($0 * shape[1])..<($0 * shape[1] + t)]) }
    let batch = try Batch(tokens: rows, labels: rows)

    let t0 = now()
    let model = try GptOssModel(directory: dir, residency: .resident)
    var adapter: LoRAAdapter
    if let path = o.adapter {
        adapter = try LoRAAdapter.load(directory: URL(fileURLWithPath: path), config: model.config)
    } else {
        let modules = o.targets == "attn" ? LoRASettings.attentionModules : ["all-linear"]
        let params = o.expertLayers.flatMap { ["\($0).mlp.experts.gate_up_proj", "\($0).mlp.experts.down_proj"] }
        let settings = try LoRASettings(rank: o.rank, alpha: o.alpha, targetModules: modules, targetParameters: params)
        adapter = try LoRAAdapter.initialized(settings: settings, config: model.config, seed: 1)
    }
    let loadSeconds = now() - t0
    let rssAfterLoad = Memory.currentRSS()
    let peakAtLoad = Memory.peakRSS()
    let resetOK = Memory.resetPeakRSS()  // from here VmHWM is the training phase's own peak

    var optimizer = AdamW(beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01)
    var stepTimes: [Double] = [], cpuTimes: [Double] = [], losses: [Double] = [], norms: [Double] = []
    var phase: [String: Double] = ["grad_s": 0, "clip_s": 0, "adamw_s": 0]
    var scored = 0
    for step in 0..<(o.warmup + o.steps) {
        let s0 = now(), c0 = cpuNow()
        let r = try model.lossAndGradients(batch, adapter: adapter, recompute: o.recompute)
        let s1 = now()
        var grads = r.gradients
        let norm = GradientClipping.clip(&grads, maxNorm: o.maxGradNorm)
        let s2 = now()
        optimizer.step(&adapter, gradients: grads, learningRate: o.lr)
        let s3 = now()
        losses.append(r.loss)
        norms.append(norm)
        scored = r.tokens
        if step >= o.warmup {
            stepTimes.append(s3 - s0)
            cpuTimes.append(cpuNow() - c0)
            phase["grad_s"]! += s1 - s0; phase["clip_s"]! += s2 - s1; phase["adamw_s"]! += s3 - s2
        }
    }
    let trainPeak = Memory.peakRSS()
    let sorted = stepTimes.sorted()
    let tokens = b * t
    let c = model.config
    let report: [String: Any] = [
        "engine": "TunaEngine", "threads": o.threads, "recompute": o.recompute, "batch": b, "seq": t,
        "tokens_per_step": tokens, "scored_tokens": scored, "warmup_steps": o.warmup, "steps": o.steps,
        "step_s": stepTimes, "step_s_min": sorted.first ?? 0, "step_s_median": sorted.isEmpty ? 0 : sorted[sorted.count / 2],
        "cpu_s": cpuTimes, "cpu_s_median": cpuTimes.isEmpty ? 0 : cpuTimes.sorted()[cpuTimes.count / 2],
        "phase_s_mean": phase.mapValues { $0 / Double(max(1, o.steps)) },
        "tokens_per_s": Double(tokens) / (sorted.first ?? .infinity),
        "losses": losses, "grad_norms": norms, "lora_parameters": adapter.parameterCount, "rank": adapter.settings.rank,
        "load_s": loadSeconds, "rss_after_load_mib": mib(rssAfterLoad), "peak_rss_load_mib": mib(peakAtLoad),
        "peak_rss_train_mib": mib(trainPeak), "peak_rss_mib": max(mib(peakAtLoad), mib(trainPeak)),
        "peak_reset_ok": resetOK,
        "sgemm_gflops_1024cube": BLASProbe.sgemmGFLOPs(m: 1024, n: 1024, k: 1024),
        "sgemm_gflops_expert_shape": BLASProbe.sgemmGFLOPs(m: tokens * c.topK / c.numLocalExperts, n: 2 * c.intermediateSize, k: c.hiddenSize),
        "openblas_coretype": ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "(unset)",
        "openblas_core": openblas_get_corename().map { String(cString: $0) } ?? "?",  // the kernel set in use
    ]
    let json = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
    print(String(decoding: json, as: UTF8.self))
}

do { try run() } catch {
    FileHandle.standardError.write(Data("TrainBench: \(error)\n".utf8))
    exit(1)
}
