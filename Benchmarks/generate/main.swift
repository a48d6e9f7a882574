// GenerateBench: native greedy generation (KV cache) on a checkpoint, timed. Driven by
// Benchmarks/generate/run.sh (see README.md).
//
//   GenerateBench <checkpoint-dir> --prompts FILE --new N [--threads T] [--repeats R]
// FILE is JSON: a list of token-id lists (the prompts bench.py also gives transformers).
// Prints one JSON line: the fastest total and prefill times and the generated tokens.
import Foundation
import TunaEngine

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

func run() throws {
    var args = CommandLine.arguments.dropFirst()
    var directory = "", promptsFile = "", new = 64, threads = 2, repeats = 3
    while let a = args.popFirst() {
        switch a {
        case "--prompts": promptsFile = args.popFirst() ?? ""
        case "--new": new = Int(args.popFirst() ?? "") ?? new
        case "--threads": threads = Int(args.popFirst() ?? "") ?? threads
        case "--repeats": repeats = Int(args.popFirst() ?? "") ?? repeats
        default: directory = a
        }
    }
    guard !directory.isEmpty, !promptsFile.isEmpty else {
        print("usage: GenerateBench <checkpoint-dir> --prompts FILE --new N [--threads T] [--repeats R]")
        exit(2)
    }
    BLAS.setThreads(threads)
    let prompts = try JSONDecoder().decode([[Int32]].self, from: Data(contentsOf: URL(fileURLWithPath: promptsFile)))
    let generator = Generator(model: try GptOssModel(directory: URL(fileURLWithPath: directory), residency: .resident))
    var totals: [Double] = [], prefills: [Double] = []
    var tokens: [[Int32]] = []
    for _ in 0..<repeats {
        var s = now()
        _ = try generator.generate(prompts: prompts, maxNewTokens: 1)  // the prefill and one token
        prefills.append(now() - s)
        s = now()
        tokens = try generator.generate(prompts: prompts, maxNewTokens: new).map(\.tokens)
        totals.append(now() - s)
    }
    let report: [String: Any] = ["total_s_min": totals.min()!, "prefill_s_min": prefills.min()!, "total_s_all": totals,
                                 "tokens": tokens.map { $0.map(Int.init) }, "peak_rss_mib": Double(Memory.peakRSS() ?? 0) / 1_048_576]
    print(String(decoding: try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]), as: UTF8.self))
}

do { try run() } catch {
    FileHandle.standardError.write(Data("GenerateBench: \(error)\n".utf8))
    exit(1)
}
