import Foundation

/// Parses and validates a safetensors JSON header against the size of its data section.
/// Rejects: non-object JSON, unknown dtypes, negative or non-integer dims, offsets that are
/// reversed or outside the data section, byte ranges whose length is not shape x dtype size,
/// and tensors whose byte ranges overlap. (Gaps between tensors are tolerated when reading;
/// our writer never produces them.)
enum SafeTensorsHeader {
    struct Parsed {
        var metadata: [String: String] = [:]
        var tensors: [String: TensorInfo] = [:]
    }

    static func parse(json: UnsafeRawBufferPointer, dataSize: Int, file: String) throws -> Parsed {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(json), options: [])
        } catch {
            throw EngineError.corruptHeader(file: file, reason: "header is not valid JSON (\(json.count) bytes)")
        }
        guard let entries = object as? [String: Any] else {
            throw EngineError.corruptHeader(file: file, reason: "header JSON is not an object")
        }
        var parsed = Parsed()
        for (name, value) in entries {
            if name == "__metadata__" {
                guard let dict = value as? [String: Any] else {
                    throw EngineError.corruptHeader(file: file, reason: "__metadata__ is not an object")
                }
                for (k, v) in dict {
                    guard let s = v as? String else {
                        throw EngineError.corruptHeader(file: file, reason: "__metadata__['\(k)'] is not a string")
                    }
                    parsed.metadata[k] = s
                }
                continue
            }
            parsed.tensors[name] = try tensorInfo(name: name, value: value, dataSize: dataSize, file: file)
        }
        try checkNoOverlap(parsed.tensors, file: file)
        return parsed
    }

    private static func tensorInfo(name: String, value: Any, dataSize: Int, file: String) throws -> TensorInfo {
        func bad(_ reason: String) -> EngineError { .badTensor(file: file, tensor: name, reason: reason) }
        guard let entry = value as? [String: Any] else { throw bad("header entry is not an object") }
        guard let dtypeName = entry["dtype"] as? String else { throw bad("missing dtype") }
        guard let dtype = DType(rawValue: dtypeName) else { throw bad("unknown dtype '\(dtypeName)'") }
        guard let shapeValues = entry["shape"] as? [Any] else { throw bad("missing shape") }
        let shape = try shapeValues.map { v -> Int in
            guard let d = exactInt(v), d >= 0 else { throw bad("shape \(shapeValues) has a non-integer or negative dimension") }
            return d
        }
        guard let offsetValues = entry["data_offsets"] as? [Any], offsetValues.count == 2,
              let begin = exactInt(offsetValues[0]), let end = exactInt(offsetValues[1]) else {
            throw bad("data_offsets must be two integers")
        }
        guard begin >= 0, begin <= end else { throw bad("data_offsets [\(begin), \(end)] are reversed or negative") }
        guard end <= dataSize else {
            throw bad("data_offsets [\(begin), \(end)] lie outside the \(dataSize)-byte data section")
        }
        // shape x dtype size, with overflow treated as a mismatch rather than a trap
        var bytes = dtype.size
        for d in shape {
            let (product, overflow) = bytes.multipliedReportingOverflow(by: d)
            guard !overflow else { throw bad("shape \(shape) is too large") }
            bytes = product
        }
        guard bytes == end - begin else {
            throw bad("shape \(shape) x \(dtype.rawValue) is \(bytes) bytes but data_offsets span \(end - begin)")
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end)
    }

    /// JSON numbers arrive as NSNumber; accept only values that are exactly integers.
    private static func exactInt(_ v: Any) -> Int? {
        // `v is Bool` is true for NSNumber(0) on Linux; booleans are told apart by their class
        if String(describing: type(of: v)).contains("Boolean") { return nil }
        if let i = v as? Int { return i }
        if let d = v as? Double, d.rounded() == d, abs(d) < 9.0e15 { return Int(d) }
        return nil
    }

    private static func checkNoOverlap(_ tensors: [String: TensorInfo], file: String) throws {
        // Empty tensors occupy no bytes and cannot overlap anything.
        let sorted = tensors.values.filter { !$0.dataOffsets.isEmpty }
            .sorted { ($0.dataOffsets.lowerBound, $0.name) < ($1.dataOffsets.lowerBound, $1.name) }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.dataOffsets.lowerBound < a.dataOffsets.upperBound {
            throw EngineError.badTensor(
                file: file, tensor: b.name,
                reason: "bytes \(b.dataOffsets) overlap tensor '\(a.name)' at \(a.dataOffsets)")
        }
    }
}

/// Widening of raw little-endian tensor bytes into Swift arrays.
enum TensorDecoding {
    static func floats(_ raw: UnsafeRawBufferPointer, dtype: DType, count: Int, file: String, tensor: String) throws -> [Float] {
        switch dtype {
        case .f32:
            return (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        case .bf16:
            return (0..<count).map { HalfFloat.bf16ToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self))) }
        case .f16:
            return (0..<count).map { HalfFloat.f16ToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self))) }
        case .f64:
            return (0..<count).map { Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)))) }
        default:
            throw EngineError.unexpectedTensor(file: file, tensor: tensor, reason: "expected a floating-point dtype, found \(dtype.rawValue)")
        }
    }

    static func integers(_ raw: UnsafeRawBufferPointer, dtype: DType, count: Int, file: String, tensor: String) throws -> [Int64] {
        func load<T: FixedWidthInteger>(_: T.Type) -> [Int64] {
            (0..<count).map { Int64(truncatingIfNeeded: T(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self))) }
        }
        switch dtype {
        case .bool, .u8: return load(UInt8.self)
        case .i8: return load(Int8.self)
        case .u16: return load(UInt16.self)
        case .i16: return load(Int16.self)
        case .u32: return load(UInt32.self)
        case .i32: return load(Int32.self)
        case .i64: return load(Int64.self)
        case .u64: return load(UInt64.self)
        default:
            throw EngineError.unexpectedTensor(file: file, tensor: tensor, reason: "expected an integer dtype, found \(dtype.rawValue)")
        }
    }
}
