import ArgumentParser
import Foundation
import TunaEngine
import TunaText

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "eval",
        abstract: "Validation loss of a checkpoint on a data set (assistant tokens) or on plain text (every token), with the native engine.")

    @Option(help: "The checkpoint directory (config.json, safetensors, tokenizer).") var model: String
    @Option(help: "Plain text: every next token is scored, no template; cut into windows of --max-seq-len.") var text: String?
    @Option(help: "A .tiktoken or tokenizer.json (default: the one in the checkpoint).") var tokenizer: String?
    @OptionGroup var dataOptions: DataOptions
    @Option(help: "Sequences scored per forward pass.") var batchSize = 8
    @Flag(help: "Print {\"loss\": L, \"tokens\": N}.") var json = false

    func validate() throws {
        guard (dataOptions.data == nil) != (text == nil) else { throw ValidationError("give --data FILE or --text FILE") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        guard dataOptions.maxSeqLen >= 2 else { throw ValidationError("--max-seq-len must be at least 2") }
    }

    func run() throws {
        do {
            let tok = try loadTokenizer(file: tokenizer, checkpoint: self.model)
            let model = try GptOssModel(directory: URL(fileURLWithPath: self.model), residency: .streaming)
            var total = 0.0, count = 0
            // Several sequences per forward, right-padded: the streaming model dequantizes every
            // layer once per forward, so one sequence per call would redo that work per example.
            let all = try sequences(tok)
            for start in stride(from: 0, to: all.count, by: batchSize) {
                let group = all[start..<min(all.count, start + batchSize)]
                let t = group.map(\.0.count).max() ?? 0
                func pad(_ row: [Int32], _ fill: Int32) -> [Int32] { row + [Int32](repeating: fill, count: t - row.count) }
                let batch = try Batch(tokens: group.map { pad($0.0, 0) },
                                      attentionMask: group.map { pad([Int32](repeating: 1, count: $0.0.count), 0) },
                                      labels: group.map { pad($0.1, Batch.ignoreIndex) })
                let (loss, n) = try model.loss(batch)
                if n > 0 { total += loss * Double(n); count += n }
            }
            let mean = count > 0 ? total / Double(count) : .nan
            if json {
                print("{\"loss\": \(mean.isFinite ? "\(mean)" : "null"), \"tokens\": \(count)}")
            } else {
                print(String(format: "loss %.6f over %d tokens (perplexity %.3f)", mean, count, exp(mean)))
            }
            if let rss = Memory.peakRSS() { FileHandle.standardError.write(Data("peak RSS \(rss / 1_048_576) MiB\n".utf8)) }
        } catch let e as ValidationError { throw e } catch let e as Failure { throw e } catch {
            throw Failure("\(error)")
        }
    }

    /// (tokens, labels) per scored sequence; labels are -100 where nothing is scored.
    private func sequences(_ tok: Tokenizer) throws -> [([Int32], [Int32])] {
        if let text {
            guard let content = try? String(contentsOfFile: text, encoding: .utf8) else { throw Failure("cannot read \(text) as UTF-8") }
            let ids = tok.encode(content)
            let n = dataOptions.maxSeqLen
            return stride(from: 0, to: ids.count, by: n).compactMap { start in
                let window = Array(ids[start..<min(ids.count, start + n)])
                return window.count >= 2 ? (window, window) : nil
            }
        }
        guard let data = dataOptions.data else { return [] }
        return try dataOptions.examples(path: data, tokenizer: tok).map { ex in
            (ex.tokens, zip(ex.tokens, ex.lossMask).map { $1 ? $0 : Batch.ignoreIndex })
        }
    }
}
