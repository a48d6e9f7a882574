import Foundation
import XCTest
@testable import TunaEngine

final class SafeTensorsTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Writes `8-byte length + header + data` verbatim (for hand-made corrupt files).
    func rawFile(_ name: String, header: String, data: [UInt8] = [], lengthOverride: UInt64? = nil) throws -> String {
        var bytes = Data()
        let h = Data(header.utf8)
        withUnsafeBytes(of: (lengthOverride ?? UInt64(h.count)).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(h)
        bytes.append(contentsOf: data)
        let url = dir.appendingPathComponent(name)
        try bytes.write(to: url)
        return url.path
    }

    func testRoundTripAllReadableDTypes() throws {
        var w = SafeTensorsWriter(metadata: ["format": "pt", "note": "tuna"])
        try w.add("f32", shape: [2, 3], floats: [1, -2, 3.5, 0, .infinity, -0.25])
        try w.add("bf16", dtype: .bf16, shape: [2], bytes: [0x80, 0x3F, 0x00, 0xC0])        // 1.0, -2.0
        try w.add("f16", dtype: .f16, shape: [3], bytes: [0x00, 0x3C, 0x00, 0xC4, 0x01, 0x00])  // 1, -4, 2^-24
        try w.add("u8", dtype: .u8, shape: [3], bytes: [0, 7, 255])
        try w.add("i32", dtype: .i32, shape: [2], bytes: [0xFF, 0xFF, 0xFF, 0xFF, 5, 0, 0, 0])  // -1, 5
        try w.add("i64", dtype: .i64, shape: [1], bytes: [0x00, 0x00, 0x00, 0x00, 0x01, 0, 0, 0])  // 2^32
        try w.add("scalar", shape: [], floats: [42])
        try w.add("empty", shape: [0, 4], floats: [])
        let url = dir.appendingPathComponent("all.safetensors")
        try w.write(to: url)

        let f = try SafeTensorsFile(path: url.path)
        XCTAssertEqual(f.metadata, ["format": "pt", "note": "tuna"])
        XCTAssertEqual(Set(f.names), ["f32", "bf16", "f16", "u8", "i32", "i64", "scalar", "empty"])
        XCTAssertEqual(try f.floats("f32"), [1, -2, 3.5, 0, .infinity, -0.25])
        XCTAssertEqual(try f.floats("bf16"), [1, -2])
        XCTAssertEqual(try f.floats("f16"), [1, -4, Float(sign: .plus, exponent: -24, significand: 1)])
        XCTAssertEqual(try f.uint8s("u8"), [0, 7, 255])
        XCTAssertEqual(try f.integers("i32"), [-1, 5])
        XCTAssertEqual(try f.integers("i64"), [1 << 32])
        XCTAssertEqual(try f.info("scalar").shape, [])
        XCTAssertEqual(try f.floats("scalar"), [42])
        XCTAssertEqual(try f.floats("empty"), [])
        // layout: header padded to 8 bytes, tensors contiguous, larger elements first
        let raw = try Data(contentsOf: url)
        let headerLength = raw.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        XCTAssertEqual((8 + Int(headerLength)) % 8, 0)
        // empty tensors share their offset with a neighbour: order ties by end so the chain is well defined
        let sorted = f.tensors.values.sorted { ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound) < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound) }
        XCTAssertEqual(sorted.first?.dataOffsets.lowerBound, 0)
        for (a, b) in zip(sorted, sorted.dropFirst()) { XCTAssertEqual(a.dataOffsets.upperBound, b.dataOffsets.lowerBound) }
        XCTAssertEqual(sorted.last.map { 8 + Int(headerLength) + $0.dataOffsets.upperBound }, raw.count)
        for t in f.tensors.values { XCTAssertEqual(t.dataOffsets.lowerBound % t.dtype.size, 0, t.name) }
    }

    func testHalfFloatConversions() {
        XCTAssertEqual(HalfFloat.floatToBF16(1.0), 0x3F80)
        XCTAssertEqual(HalfFloat.floatToBF16(Float(bitPattern: 0x3F80_8000)), 0x3F80)  // tie -> even
        XCTAssertEqual(HalfFloat.floatToBF16(Float(bitPattern: 0x3F81_8000)), 0x3F82)  // tie -> even (up)
        XCTAssertTrue(HalfFloat.bf16ToFloat(HalfFloat.floatToBF16(.nan)).isNaN)
        XCTAssertEqual(HalfFloat.f16ToFloat(0x7C00), .infinity)
        XCTAssertEqual(HalfFloat.f16ToFloat(0x3555), 0.333251953125)
    }

    func testReadsPythonWrittenFile() throws {
        // written by safetensors 0.8 (Python) in make_goldens.py
        let f = try SafeTensorsFile(path: try Fixture.url("topk2/reference.safetensors").path)
        XCTAssertEqual(f.metadata["cases"], "single,padded,packed")
        XCTAssertEqual(try f.info("single.input_ids").dtype, .i64)
        XCTAssertEqual(try f.info("single.loss").shape, [])
    }

    // MARK: failures — each must name the file (and tensor) and never crash

    func testEmptyAndShortFiles() throws {
        let empty = dir.appendingPathComponent("empty.safetensors")
        try Data().write(to: empty)
        assertEngineError(try SafeTensorsFile(path: empty.path), mentions: [empty.path, "shorter than"])
        let short = dir.appendingPathComponent("short.safetensors")
        try Data([1, 2, 3]).write(to: short)
        assertEngineError(try SafeTensorsFile(path: short.path), mentions: [short.path, "shorter than"])
        assertEngineError(try SafeTensorsFile(path: dir.appendingPathComponent("nope").path), mentions: ["nope", "cannot open"])
    }

    func testHeaderLengthBeyondFile() throws {
        let p = try rawFile("long.safetensors", header: "{}", lengthOverride: 1000)
        assertEngineError(try SafeTensorsFile(path: p), mentions: [p, "runs past the end"])
        let huge = try rawFile("huge.safetensors", header: "{}", lengthOverride: UInt64.max)
        assertEngineError(try SafeTensorsFile(path: huge), mentions: [huge, "exceeds"])
    }

    func testTruncatedFile() throws {
        var w = SafeTensorsWriter()
        try w.add("x", shape: [16], floats: Array(repeating: 1, count: 16))
        let full = try w.serialized()
        let url = dir.appendingPathComponent("trunc.safetensors")
        try full.prefix(full.count - 4).write(to: url)
        assertEngineError(try SafeTensorsFile(path: url.path), mentions: [url.path, "'x'", "outside"])
    }

    func testBadJSON() throws {
        let p = try rawFile("json.safetensors", header: "{\"x\": [")
        assertEngineError(try SafeTensorsFile(path: p), mentions: [p, "not valid JSON"])
        let q = try rawFile("array.safetensors", header: "[1, 2]")
        assertEngineError(try SafeTensorsFile(path: q), mentions: [q, "not an object"])
        let m = try rawFile("meta.safetensors", header: #"{"__metadata__": {"a": 1}}"#)
        assertEngineError(try SafeTensorsFile(path: m), mentions: [m, "__metadata__"])
    }

    func testUnknownDType() throws {
        let p = try rawFile("dtype.safetensors", header: #"{"w": {"dtype": "F7", "shape": [1], "data_offsets": [0, 1]}}"#, data: [0])
        assertEngineError(try SafeTensorsFile(path: p), mentions: [p, "'w'", "unknown dtype 'F7'"])
    }

    func testOffsetsOutsideData() throws {
        let p = try rawFile("off.safetensors", header: #"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#,
                            data: Array(repeating: 0, count: 8))
        assertEngineError(try SafeTensorsFile(path: p), mentions: [p, "'w'", "outside"])
        let r = try rawFile("rev.safetensors", header: #"{"w": {"dtype": "U8", "shape": [0], "data_offsets": [4, 2]}}"#,
                            data: Array(repeating: 0, count: 8))
        assertEngineError(try SafeTensorsFile(path: r), mentions: [r, "'w'", "reversed"])
    }

    func testShapeSizeMismatch() throws {
        let p = try rawFile("size.safetensors", header: #"{"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 8]}}"#,
                            data: Array(repeating: 0, count: 8))
        assertEngineError(try SafeTensorsFile(path: p), mentions: [p, "'w'", "6 bytes but data_offsets span 8"])
        let o = try rawFile("ovf.safetensors",
                            header: #"{"w": {"dtype": "F64", "shape": [4611686018427387904, 4], "data_offsets": [0, 8]}}"#,
                            data: Array(repeating: 0, count: 8))
        assertEngineError(try SafeTensorsFile(path: o), mentions: [o, "'w'", "too large"])
        let n = try rawFile("neg.safetensors", header: #"{"w": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 0]}}"#)
        assertEngineError(try SafeTensorsFile(path: n), mentions: [n, "'w'", "negative"])
    }

    func testOverlappingTensors() throws {
        let header = #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#
        let p = try rawFile("overlap.safetensors", header: header, data: Array(repeating: 0, count: 12))
        assertEngineError(try SafeTensorsFile(path: p), mentions: [p, "'b'", "overlap tensor 'a'"])
    }

    func testWrongDTypeAccess() throws {
        var w = SafeTensorsWriter()
        try w.add("x", shape: [1], floats: [1])
        let url = dir.appendingPathComponent("x.safetensors")
        try w.write(to: url)
        let f = try SafeTensorsFile(path: url.path)
        assertEngineError(try f.uint8s("x"), mentions: [url.path, "'x'", "expected U8"])
        assertEngineError(try f.integers("x"), mentions: [url.path, "'x'", "integer"])
        assertEngineError(try f.floats("y"), mentions: [url.path, "missing tensor 'y'"])
    }

    func testWriterRejectsBadEntries() throws {
        var w = SafeTensorsWriter()
        assertEngineError(try w.add("x", dtype: .f32, shape: [2], bytes: [0, 0, 0, 0]), mentions: ["'x'", "needs 8 bytes"])
        try w.add("x", shape: [1], floats: [1])
        assertEngineError(try w.add("x", shape: [1], floats: [1]), mentions: ["'x'", "duplicate"])
    }

    // MARK: sharded directories

    func writeShards(weightMap: [String: String]? = nil) throws {
        var a = SafeTensorsWriter(), b = SafeTensorsWriter()
        try a.add("one", shape: [2], floats: [1, 2])
        try b.add("two", shape: [1], floats: [3])
        try a.write(to: dir.appendingPathComponent("model-00001-of-00002.safetensors"))
        try b.write(to: dir.appendingPathComponent("model-00002-of-00002.safetensors"))
        let map = weightMap ?? ["one": "model-00001-of-00002.safetensors", "two": "model-00002-of-00002.safetensors"]
        let json = try JSONSerialization.data(withJSONObject: ["metadata": ["total_size": 12], "weight_map": map])
        try json.write(to: dir.appendingPathComponent("model.safetensors.index.json"))
    }

    func testShardedIndex() throws {
        try writeShards()
        let store = try TensorStore(directory: dir)
        XCTAssertEqual(store.names, ["one", "two"])
        XCTAssertEqual(try store.floats("two", shape: [1]), [3])
        assertEngineError(try store.floats("one", shape: [3]), mentions: ["model-00001-of-00002.safetensors", "'one'", "expected [3]"])
        assertEngineError(try store.floats("three", shape: [1]), mentions: [dir.path, "'three'"])
    }

    func testIndexPromisingMissingTensor() throws {
        try writeShards(weightMap: ["one": "model-00001-of-00002.safetensors", "two": "model-00002-of-00002.safetensors",
                                    "ghost": "model-00002-of-00002.safetensors"])
        assertEngineError(try TensorStore(directory: dir), mentions: ["model-00002-of-00002.safetensors", "'ghost'"])
    }

    func testIndexNamingMissingShard() throws {
        try writeShards(weightMap: ["one": "model-00001-of-00002.safetensors", "two": "model-00009-of-00009.safetensors"])
        assertEngineError(try TensorStore(directory: dir), mentions: ["model-00009-of-00009.safetensors", "cannot open"])
    }
}
