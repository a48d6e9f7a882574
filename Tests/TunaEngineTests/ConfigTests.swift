import Foundation
import XCTest
@testable import TunaEngine

final class ConfigTests: XCTestCase {
    func decode(_ json: String) throws -> GptOssConfig {
        try JSONDecoder().decode(GptOssConfig.self, from: Data(json.utf8))
    }

    /// transformers 5.17 writes rope_parameters with rope_theta inside.
    func testTransformers5Config() throws {
        let c = try GptOssConfig.load(from: try Fixture.url("topk2/config.json"))
        XCTAssertEqual(c.hiddenSize, 64)
        XCTAssertEqual(c.topK, 2)
        XCTAssertNil(c.ropeScaling)
        XCTAssertEqual(c.resolvedRope.ropeType, "yarn")
        XCTAssertEqual(c.resolvedRope.ropeTheta, 150000)
        XCTAssertEqual(c.resolvedRope.factor, 32)
        XCTAssertEqual(c.resolvedRope.originalMaxPositionEmbeddings, 4096)
        XCTAssertEqual(c.resolvedRope.truncate, false)
        XCTAssertEqual(c.resolvedLayerTypes, ["sliding_attention", "full_attention", "sliding_attention", "full_attention"])
        XCTAssertTrue(c.isMXFP4)
        XCTAssertTrue(c.isSliding(layer: 0))
        XCTAssertFalse(c.isSliding(layer: 1))
    }

    /// openai/gpt-oss hub style: rope_scaling + top-level rope_theta, experts_per_token alias.
    func testHubStyleConfig() throws {
        let c = try GptOssConfig.load(from: try Fixture.url("topk4/config.json"))
        XCTAssertNil(c.ropeParameters)
        XCTAssertEqual(c.expertsPerToken, 4)
        XCTAssertEqual(c.topK, 4)
        XCTAssertEqual(c.resolvedRope.ropeTheta, 150000)
        XCTAssertEqual(c.resolvedRope.truncate, true)
        XCTAssertEqual(c.swigluLimit, 7.0)
        XCTAssertEqual(c.kvHeads, 2)
        XCTAssertEqual(c.resolvedHeadDim, 8)
    }

    func testDefaultsAndAlias() throws {
        let c = try decode("""
        {"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "num_local_experts": 8,
         "experts_per_token": 2, "intermediate_size": 64, "vocab_size": 10}
        """)
        XCTAssertEqual(c.topK, 2)
        XCTAssertEqual(c.kvHeads, 4)
        XCTAssertEqual(c.resolvedHeadDim, 16)
        XCTAssertEqual(c.resolvedLayerTypes, ["sliding_attention", "full_attention", "sliding_attention"])
        XCTAssertEqual(c.resolvedRope, RopeParameters(ropeType: "yarn", ropeTheta: 150000, factor: 32, betaFast: 32,
                                                      betaSlow: 1, originalMaxPositionEmbeddings: 4096, truncate: false))
        XCTAssertEqual(c.limit, 7)
        XCTAssertNoThrow(try c.validate(file: "x"))
    }

    func testRoundTripKeepsConfigNames() throws {
        let c = try GptOssConfig.load(from: try Fixture.url("topk4/config.json"))
        let data = try JSONEncoder().encode(c)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertNotNil(object["rope_scaling"])
        XCTAssertNotNil(object["num_key_value_heads"])
        XCTAssertEqual(try JSONDecoder().decode(GptOssConfig.self, from: data), c)
    }

    func testValidationErrorsNameTheFile() throws {
        var c = try GptOssConfig.load(from: try Fixture.url("topk2/config.json"))
        c.layerTypes = ["full_attention"]
        assertEngineError(try c.validate(file: "cfg.json"), mentions: ["cfg.json", "layer_types has 1 entries for 4 layers"])
        c = try GptOssConfig.load(from: try Fixture.url("topk2/config.json"))
        c.numKeyValueHeads = 3
        assertEngineError(try c.validate(file: "cfg.json"), mentions: ["cfg.json", "not a multiple"])
        c = try GptOssConfig.load(from: try Fixture.url("topk2/config.json"))
        c.ropeParameters?.ropeType = "longrope"
        assertEngineError(try c.validate(file: "cfg.json"), mentions: ["longrope"])
        c = try GptOssConfig.load(from: try Fixture.url("topk2/config.json"))
        c.expertsPerToken = 3
        assertEngineError(try c.validate(file: "cfg.json"), mentions: ["disagrees"])
    }

    func testUndecodableConfigNamesFile() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("bad-config-\(UUID().uuidString).json")
        try Data(#"{"hidden_size": "big"}"#.utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        assertEngineError(try GptOssConfig.load(from: url), mentions: [url.path, "cannot decode"])
    }

    /// A checkpoint whose tensor has the wrong shape fails with the file and tensor named.
    func testCheckpointShapeMismatchNamesTensor() throws {
        let src = try Fixture.url("topk2")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: src.appendingPathComponent("config.json"))) as? [String: Any])
        json["vocab_size"] = 300
        try JSONSerialization.data(withJSONObject: json).write(to: dir.appendingPathComponent("config.json"))
        try FileManager.default.copyItem(at: src.appendingPathComponent("model.safetensors"), to: dir.appendingPathComponent("model.safetensors"))
        assertEngineError(try GptOssModel(directory: dir), mentions: ["model.safetensors", "model.embed_tokens.weight", "expected [300, 64]"])
    }
}
