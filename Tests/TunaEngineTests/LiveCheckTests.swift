import Foundation
import XCTest
@testable import TunaEngine

/// Runs only when Tests/Python/test_engine_live.py (or CI) sets TUNA_LIVE_CHECK_DIR to a freshly
/// generated random checkpoint + reference.safetensors. Writes the native logits back as
/// swift_logits.safetensors so the script can compare them on the Python side as well.
final class LiveCheckTests: XCTestCase {
    func testLiveCheckDirectory() throws {
        guard let path = ProcessInfo.processInfo.environment["TUNA_LIVE_CHECK_DIR"], !path.isEmpty else {
            throw XCTSkip("TUNA_LIVE_CHECK_DIR not set (run python3 -m pytest Tests/Python/test_engine_live.py)")
        }
        let dir = URL(fileURLWithPath: path)
        let worst = try GoldenTests.checkModel(directory: dir, label: "live")
        print("live check \(path): worst logits max rel err \(String(format: "%.2e", worst))")

        let model = try GptOssModel(directory: dir, residency: .streaming)
        let reference = try SafeTensorsFile(path: dir.appendingPathComponent("reference.safetensors").path)
        var writer = SafeTensorsWriter(metadata: ["producer": "TunaEngine"])
        for name in (reference.metadata["cases"] ?? "").split(separator: ",").map(String.init) {
            let ref = try ReferenceCase(file: reference, name: name)
            let logits = try model.forward(ref.batch)
            try writer.add("\(name).logits", shape: [logits.batchSize, logits.length, logits.vocabSize], floats: logits.values)
        }
        try writer.write(to: dir.appendingPathComponent("swift_logits.safetensors"))
    }
}
