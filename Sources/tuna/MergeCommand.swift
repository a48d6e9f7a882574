import ArgumentParser
import Foundation
import TunaEngine

struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "merge",
        abstract: "Write a checkpoint with a LoRA adapter merged into the base weights (loads in transformers without PEFT).")

    @Option(help: "The base checkpoint directory.") var model: String
    @Option(help: "The adapter directory (adapter_config.json + adapter_model.safetensors).") var adapter: String
    @Option(help: "Output directory (not the base's).") var out: String
    @Option(help: "Attention weights' dtype: bf16 (the base's) or f32 (exact).") var dtype = "bf16"
    @Option(help: "Experts: mxfp4 (re-quantize the merged layers; small, lossy) or bf16 / f32 (every layer dense, no quantization_config).")
    var experts = "mxfp4"
    @Flag(help: "Print JSON.") var json = false

    struct Merged: Encodable { var out: String; var merged_tensors: Int; var max_requantization_error: Double? }

    func run() throws {
        func dtypeNamed(_ s: String, _ flag: String) throws -> DType {
            switch s.lowercased() { case "bf16": return .bf16; case "f32", "fp32": return .f32
            default: throw ValidationError("\(flag) must be bf16 or f32") }
        }
        let attention = try dtypeNamed(dtype, "--dtype")
        let expertMode: LoRAMerge.Experts = experts.lowercased() == "mxfp4" ? .mxfp4 : .dense(try dtypeNamed(experts, "--experts"))
        do {
            let base = try GptOssCheckpoint(directory: URL(fileURLWithPath: model))
            let lora = try LoRAAdapter.load(directory: URL(fileURLWithPath: adapter), config: base.config)
            let report = try LoRAMerge.write(base: base, adapter: lora, to: URL(fileURLWithPath: out),
                                             attentionDType: attention, experts: expertMode)
            if json {
                return printJSON(Merged(out: out, merged_tensors: report.mergedTensors.count,
                                        max_requantization_error: report.maxRequantizationError > 0 ? Double(report.maxRequantizationError) : nil))
            }
            print("merged \(report.mergedTensors.count) tensors into \(out)")
            if report.maxRequantizationError > 0 {
                print(String(format: "experts re-quantized to MXFP4: max abs rounding error %.3g (use --experts bf16 to keep them exact to bf16)",
                             report.maxRequantizationError))
            }
        } catch { throw Failure("\(error)") }
    }
}
