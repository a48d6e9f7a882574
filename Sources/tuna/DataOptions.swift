import ArgumentParser
import Foundation
import TunaText

/// How a command reads a data set file (eval, tokenize): the same loader the trainers use.
struct DataOptions: ParsableArguments {
    @Option(help: "A data set file (CSV, JSONL of prompt/response, or JSONL chats).") var data: String?
    @Option(help: "Data set format: csv, jsonl or chat (default: .csv is csv, else jsonl).") var format: String?
    @Option(help: "Chat template: harmony or im_start.") var template = "harmony"
    @Option(help: "Column mapping, e.g. prompt=problem,response=solution.") var fields: String?
    @Option(help: "Longest sequence; longer examples are truncated.") var maxSeqLen = 2048

    func spec(path: String) throws -> DatasetSpec {
        let fmt = format ?? (path.hasSuffix(".csv") ? "csv" : "jsonl")
        guard let f = DatasetSpec.Format(rawValue: fmt) else { throw ValidationError("--format must be csv, jsonl or chat") }
        guard let t = DatasetSpec.Template(rawValue: template) else { throw ValidationError("--template must be harmony or im_start") }
        guard maxSeqLen >= 2 else { throw ValidationError("--max-seq-len must be at least 2") }
        var mapping = DatasetSpec.Fields()
        for pair in (fields ?? "").split(separator: ",") {
            let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw ValidationError("--fields takes role=column pairs") }
            switch kv[0] {
            case "prompt": mapping.prompt = kv[1]
            case "response": mapping.response = kv[1]
            case "system": mapping.system = kv[1]
            case "thinking": mapping.thinking = kv[1]
            case "messages": mapping.messages = kv[1]
            default: throw ValidationError("--fields: unknown role \(kv[0]) (prompt, response, system, thinking, messages)")
            }
        }
        return DatasetSpec(path: path, format: f, template: t, fields: mapping, valFraction: 0, maxSeqLen: maxSeqLen)
    }

    /// Every row of the file rendered to (tokens, loss mask), in file order.
    func examples(path: String, tokenizer: Tokenizer) throws -> [RenderedExample] {
        do { return try loadDataset(try spec(path: path), tokenizer: tokenizer).train } catch let e as ValidationError { throw e } catch {
            throw Failure("\(error)")
        }
    }
}

/// A tokenizer from a file (.tiktoken or tokenizer.json) or from a checkpoint directory.
func loadTokenizer(file: String?, checkpoint: String?) throws -> Tokenizer {
    do {
        if let file {
            return file.hasSuffix(".json") ? try Tokenizer(tokenizerJSON: URL(fileURLWithPath: file)) : try Tokenizer(tiktokenFile: URL(fileURLWithPath: file))
        }
        guard let checkpoint else { throw ValidationError("give --tokenizer FILE or --model DIR") }
        return try Tokenizer.load(fromCheckpoint: URL(fileURLWithPath: checkpoint))
    } catch let e as ValidationError { throw e } catch { throw Failure("\(error)") }
}
