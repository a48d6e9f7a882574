import Foundation
import XCTest
@testable import TunaEngine

/// Runs only when Tests/Python/test_lora_live.py (or CI) sets TUNA_LORA_CHECK_DIR to a
/// freshly drawn LoRA reference directory (same layout as the lora-* fixtures). Checks it like
/// the goldens, then writes what the native side computed into DIR/swift/ so the script can
/// compare it in Python as well, and load the trained adapter with PeftModel.from_pretrained:
///   grads.safetensors    d(loss)/d(tensor) at the initial adapter, keyed by PEFT's names
///   steps.json           {"loss", "tokens", "losses", "lrs", "grad_norms"}
///   adapter/             LoRAAdapter.save after the steps (PEFT layout)
///   logits.safetensors   "<case>.logits" with that trained adapter
final class LoRALiveCheckTests: XCTestCase {
    func testLoRALiveCheckDirectory() throws {
        guard let path = ProcessInfo.processInfo.environment["TUNA_LORA_CHECK_DIR"], !path.isEmpty else {
            throw XCTSkip("TUNA_LORA_CHECK_DIR not set (run python3 -m pytest Tests/Python/test_lora_live.py)")
        }
        let dir = URL(fileURLWithPath: path)
        let run = try LoRAGoldenTests.check(directory: dir, label: "live", requireClipping: false)

        // Written even when a check above failed: the Python side then says by how much.
        let out = dir.appendingPathComponent("swift")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        var grads = SafeTensorsWriter(metadata: ["producer": "TunaEngine"])
        for name in run.initialGradients.keys.sorted() {
            try grads.add(name, shape: run.adapter.shapes[name]!, floats: run.initialGradients[name]!)
        }
        try grads.write(to: out.appendingPathComponent("grads.safetensors"))

        let steps: [String: Any] = ["loss": run.loss, "tokens": run.tokens, "losses": run.losses, "lrs": run.rates,
                                    "grad_norms": run.gradNorms]
        try JSONSerialization.data(withJSONObject: steps, options: [.prettyPrinted, .sortedKeys])
            .write(to: out.appendingPathComponent("steps.json"))

        try run.adapter.save(directory: out.appendingPathComponent("adapter"), baseModel: dir.appendingPathComponent("model").path)

        var logits = SafeTensorsWriter(metadata: ["producer": "TunaEngine"])
        let l = run.finalLogits
        try logits.add("\(run.caseName).logits", shape: [l.batchSize, l.length, l.vocabSize], floats: l.values)
        try logits.write(to: out.appendingPathComponent("logits.safetensors"))
        print("lora live check \(path): wrote \(out.path)")
    }
}
