// Tokenizer throughput benchmark: encodes one text file single-threaded with TunaText's
// o200k_harmony tokenizer and prints one JSON line (run.sh compares it with tiktoken).
//
//   TokenizerBench <o200k_base.tiktoken | tokenizer.json> <text file> [repeats]
//   TokenizerBench --dataset <vocabulary> <data.jsonl>   (times loadDataset end to end: prompt/response
//                                                         columns, harmony, a 10% validation split)
import Foundation
import TunaText

func seconds(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}

func loadTokenizer(_ path: String) throws -> Tokenizer {
    // A `.json` vocabulary is read as a HF tokenizer.json, anything else as a .tiktoken file.
    let url = URL(fileURLWithPath: path)
    return url.pathExtension == "json" ? try Tokenizer(tokenizerJSON: url) : try Tokenizer(tiktokenFile: url)
}

var args = Array(CommandLine.arguments.dropFirst())
let datasetMode = args.first == "--dataset"
if datasetMode { args.removeFirst() }
guard args.count >= 2 else {
    FileHandle.standardError.write(Data("""
        usage: TokenizerBench <o200k_base.tiktoken | tokenizer.json> <text file> [repeats]
               TokenizerBench --dataset <vocabulary> <data.jsonl>

        """.utf8))
    exit(2)
}

do {
    let loadStart = DispatchTime.now()
    let tokenizer = try loadTokenizer(args[0])
    let loadSeconds = seconds(since: loadStart)

    if datasetMode {
        let spec = DatasetSpec(path: args[1], valFraction: 0.1, seed: 42)
        let start = DispatchTime.now()
        let loaded = try loadDataset(spec, tokenizer: tokenizer)
        let stats = String(decoding: try JSONEncoder().encode(loaded.stats), as: UTF8.self)
        print("{\"impl\":\"swift\",\"seconds\":\(seconds(since: start)),\"load_seconds\":\(loadSeconds),\"stats\":\(stats)}")
        exit(0)
    }

    let repeats = args.count > 2 ? max(1, Int(args[2]) ?? 3) : 3
    let data = try Data(contentsOf: URL(fileURLWithPath: args[1]))
    let text = String(decoding: data, as: UTF8.self)
    var best = Double.infinity
    var tokens = 0
    for _ in 0..<repeats {
        let start = DispatchTime.now()
        let ids = tokenizer.encode(text)
        best = min(best, seconds(since: start))
        tokens = ids.count
    }
    print("{\"impl\":\"swift\",\"bytes\":\(data.count),\"tokens\":\(tokens),\"seconds\":\(best),\"load_seconds\":\(loadSeconds)}")
} catch {
    FileHandle.standardError.write(Data("TokenizerBench: \(error)\n".utf8))
    exit(1)
}
