import XCTest
@testable import TunaEngine

/// Target names with PEFT's matching rules (an entry matches names it equals or is a
/// dot-bounded suffix of), since adapters written by PEFT carry whatever form the user gave.
final class LoRASettingsTests: XCTestCase {
    func testExpertParameterForms() {
        XCTAssertEqual(LoRASettings.parseParameter("7.mlp.experts.gate_up_proj")?.layer, 7)
        XCTAssertEqual(LoRASettings.parseParameter("model.layers.7.mlp.experts.down_proj")?.layer, 7)
        XCTAssertEqual(LoRASettings.parseParameter("layers.0.mlp.experts.down_proj")?.parameter, "down_proj")
        XCTAssertNotNil(LoRASettings.parseParameter("mlp.experts.down_proj"))
        XCTAssertNil(LoRASettings.parseParameter("mlp.experts.down_proj")?.layer)
        XCTAssertNotNil(LoRASettings.parseParameter("gate_up_proj"))
        for bad in ["7.mlp.experts.up_proj", "x.mlp.experts.down_proj", "07.mlp.experts.down_proj", "model.layers.7.self_attn.down_proj",
                    "foo.model.layers.7.mlp.experts.down_proj", ""] {
            XCTAssertNil(LoRASettings.parseParameter(bad), bad)
        }
    }

    func testLayoutFollowsTheTargets() throws {
        let cfg = try JSONDecoder().decode(GptOssConfig.self, from: Data("""
            {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
             "num_local_experts": 4, "num_experts_per_tok": 2, "intermediate_size": 32, "vocab_size": 64}
            """.utf8))
        // every layer's down_proj, layer 1's gate_up_proj, q_proj of layer 2 only (a PEFT-resolved name)
        let s = try LoRASettings(rank: 2, alpha: 4, targetModules: ["model.layers.2.self_attn.q_proj"],
                                 targetParameters: ["mlp.experts.down_proj", "model.layers.1.mlp.experts.gate_up_proj"])
        let a = try LoRAAdapter.initialized(settings: s, config: cfg, seed: 1)
        let names = a.tensors.keys.sorted()
        XCTAssertEqual(names.filter { $0.contains("self_attn") }, ["base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight",
                                                                   "base_model.model.model.layers.2.self_attn.q_proj.lora_B.weight"])
        XCTAssertEqual(a.shapes["base_model.model.model.layers.1.mlp.experts.base_layer.lora_A.weight"], [8, 32], "gate_up nested under down")
        XCTAssertEqual(a.shapes["base_model.model.model.layers.0.mlp.experts.lora_B.weight"], [32, 8])
        XCTAssertEqual(names.count, 2 + 2 + 3 * 2)
        XCTAssertThrowsError(try LoRASettings(rank: 2, alpha: 4, targetModules: ["router"])) { e in
            XCTAssertTrue("\(e)".contains("router is not a linear layer of gpt-oss"), "\(e)")
        }
    }
}
