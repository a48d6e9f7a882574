import Foundation

/// Writes a `.safetensors` file the reference readers accept: JSON header with sorted keys and
/// `__metadata__`, padded with spaces to a multiple of 8 bytes, then tensors back to back with
/// no gaps (the reference validator requires contiguous coverage). Tensors are laid out by
/// element size, largest first, then by name, so every tensor starts aligned to its element
/// size when the mapping is page-aligned.
public struct SafeTensorsWriter {
    public struct Entry {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        public let bytes: [UInt8]  // little-endian element bytes

        public init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
            self.name = name; self.dtype = dtype; self.shape = shape; self.bytes = bytes
        }
    }

    public private(set) var entries: [Entry] = []
    public var metadata: [String: String]

    public init(metadata: [String: String] = [:]) { self.metadata = metadata }

    public mutating func add(_ name: String, dtype: DType, shape: [Int], bytes: [UInt8]) throws {
        let expected = shape.reduce(dtype.size, *)
        guard expected == bytes.count else {
            throw EngineError.badTensor(file: "<writer>", tensor: name,
                                        reason: "shape \(shape) x \(dtype.rawValue) needs \(expected) bytes, got \(bytes.count)")
        }
        guard name != "__metadata__", !entries.contains(where: { $0.name == name }) else {
            throw EngineError.badTensor(file: "<writer>", tensor: name, reason: "duplicate or reserved name")
        }
        entries.append(Entry(name: name, dtype: dtype, shape: shape, bytes: bytes))
    }

    public mutating func add(_ name: String, shape: [Int], floats: [Float]) throws {
        var bytes = [UInt8](); bytes.reserveCapacity(floats.count * 4)
        for f in floats { withUnsafeBytes(of: f.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        try add(name, dtype: .f32, shape: shape, bytes: bytes)
    }

    /// The complete file contents.
    public func serialized() throws -> Data {
        let ordered = entries.sorted { ($0.dtype.size, $1.name) > ($1.dtype.size, $0.name) }
        var header: [String: Any] = [:]
        var offset = 0
        for e in ordered {
            header[e.name] = ["dtype": e.dtype.rawValue, "shape": e.shape, "data_offsets": [offset, offset + e.bytes.count]]
            offset += e.bytes.count
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys, .withoutEscapingSlashes])
        // 8 (length) + header must end on an 8-byte boundary so F32/F64/I64 data is aligned.
        while json.count % 8 != 0 { json.append(UInt8(ascii: " ")) }
        var out = Data()
        out.reserveCapacity(8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for e in ordered { out.append(contentsOf: e.bytes) }
        return out
    }

    public func write(to url: URL) throws {
        do { try serialized().write(to: url) } catch let e as EngineError { throw e } catch {
            throw EngineError.io(file: url.path, reason: "write failed: \(error)")
        }
    }
}
