// Tokenizer throughput benchmark: encodes one text file single-threaded with TunaText's
// o200k_harmony tokenizer and prints one JSON line (the runner script compares it with
// tiktoken). Usage: TokenizerBench <o200k_base.tiktoken> <text file> [repeats]
import Foundation
import TunaText

let args = CommandLine.arguments
guard args.count >= 3 else {
    FileHandle.standardError.write(Data("usage: TokenizerBench <o200k_base.tiktoken> <text file> [repeats]\n".utf8))
    exit(2)
}
let repeats = args.count > 3 ? max(1, Int(args[3]) ?? 3) : 3

do {
    let loadStart = DispatchTime.now()
    let tokenizer = try Tokenizer(tiktokenFile: URL(fileURLWithPath: args[1]))
    let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - loadStart.uptimeNanoseconds) / 1e9

    let data = try Data(contentsOf: URL(fileURLWithPath: args[2]))
    let text = String(decoding: data, as: UTF8.self)
    var best = Double.infinity
    var tokens = 0
    for _ in 0..<repeats {
        let start = DispatchTime.now()
        let ids = tokenizer.encode(text)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        best = min(best, seconds)
        tokens = ids.count
    }
    print("{\"impl\":\"swift\",\"bytes\":\(data.count),\"tokens\":\(tokens),\"seconds\":\(best),\"load_seconds\":\(loadSeconds)}")
} catch {
    FileHandle.standardError.write(Data("TokenizerBench: \(error)\n".utf8))
    exit(1)
}
