import ArgumentParser
import Foundation
import TunaEngine
import TunaText

/// `tuna init-model`: a small random gpt-oss checkpoint laid out like the real ones (MXFP4
/// experts, BF16 elsewhere) with a cut-down o200k_harmony tokenizer: what the demo and the
/// tests train on, made without Python or downloads.
struct InitModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "init-model",
        abstract: "Write a small random gpt-oss checkpoint (MXFP4 experts) with a small o200k-derived tokenizer.")

    @Option(help: "Output directory.") var out: String
    @Option(help: "o200k_base.tiktoken to cut the tokenizer from.") var vocabulary: String
    @Option(help: "Ordinary tokens kept from o200k (the first K ranks).") var ordinaryTokens = 1024
    @Option(help: "Hidden size.") var hidden = 64
    @Option(help: "Decoder layers.") var layers = 4
    @Option(help: "Experts per layer.") var experts = 8
    @Option(help: "Experts per token (top-k).") var topK = 2
    @Option(help: "Expert intermediate size (a multiple of 32).") var intermediate = 64
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Flag(help: "Print JSON.") var json = false

    struct Written: Encodable { var out: String; var layers, hidden, experts, top_k, vocabulary: Int }

    func run() throws {
        let dir = URL(fileURLWithPath: out)
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let vocab = try TinyTokenizer.write(to: dir.appendingPathComponent("tokenizer.json"),
                                                tiktokenFile: URL(fileURLWithPath: vocabulary), ordinaryTokens: ordinaryTokens)
            let specials = TinyTokenizer.specialTokens(ordinaryTokens: ordinaryTokens)
            var spec = TinyModel.Spec(hiddenSize: hidden, layers: layers, experts: experts, expertsPerToken: topK,
                                      intermediateSize: intermediate, vocabSize: (vocab + 31) / 32 * 32)
            spec.eosTokenID = specials["<|return|>"].map(Int.init)
            spec.padTokenID = specials["<|endoftext|>"].map(Int.init)
            try TinyModel.write(to: dir, spec: spec, seed: seed)
            if json { return printJSON(Written(out: out, layers: layers, hidden: hidden, experts: experts, top_k: topK, vocabulary: spec.vocabSize)) }
            print("wrote \(out): \(layers) layers, hidden \(hidden), \(experts) experts top-\(topK), vocabulary \(spec.vocabSize)")
        } catch { throw Failure("\(error)") }
    }
}
