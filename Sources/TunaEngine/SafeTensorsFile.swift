import Foundation

/// One tensor's header entry: dtype, shape and its byte range inside the data section.
public struct TensorInfo: Equatable, Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Byte range relative to the start of the data section (after the 8-byte length and header).
    public let dataOffsets: Range<Int>

    public var elementCount: Int { shape.reduce(1, *) }
}

/// A memory-mapped `.safetensors` file: an 8-byte little-endian header length N, N bytes of
/// JSON `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}`,
/// then the data section. Everything in the header is validated up front, so later reads
/// can slice the mapping without further checks.
public struct SafeTensorsFile: Sendable {
    public let path: String
    public let metadata: [String: String]
    public let tensors: [String: TensorInfo]
    private let file: MappedFile
    private let dataStart: Int

    /// The reference implementation refuses headers over 100 MB; so do we, which also keeps a
    /// corrupt length prefix from making us parse gigabytes of tensor data as JSON.
    public static let maxHeaderBytes = 100_000_000

    public init(path: String) throws {
        let file = try MappedFile(path: path)
        self.file = file
        self.path = path
        let bytes = file.bytes
        guard bytes.count >= 8 else {
            throw EngineError.corruptHeader(file: path, reason: "file is \(bytes.count) bytes, shorter than the 8-byte header length")
        }
        let headerLength = bytes.loadUnaligned(as: UInt64.self).littleEndian
        guard headerLength <= UInt64(Self.maxHeaderBytes) else {
            throw EngineError.corruptHeader(file: path, reason: "header length \(headerLength) exceeds the \(Self.maxHeaderBytes)-byte limit")
        }
        guard Int(headerLength) <= bytes.count - 8 else {
            throw EngineError.corruptHeader(file: path, reason: "header length \(headerLength) runs past the end of the \(bytes.count)-byte file")
        }
        dataStart = 8 + Int(headerLength)
        let header = try SafeTensorsHeader.parse(
            json: UnsafeRawBufferPointer(rebasing: bytes[8..<dataStart]),
            dataSize: bytes.count - dataStart, file: path)
        metadata = header.metadata
        tensors = header.tensors
    }

    /// Tensor names in a stable (sorted) order.
    public var names: [String] { tensors.keys.sorted() }

    public func info(_ name: String) throws -> TensorInfo {
        guard let info = tensors[name] else { throw EngineError.missingTensor(file: path, tensor: name) }
        return info
    }

    /// The raw little-endian bytes of one tensor, borrowed from the mapping.
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let info = try info(name)
        let all = file.bytes
        let range = (dataStart + info.dataOffsets.lowerBound)..<(dataStart + info.dataOffsets.upperBound)
        return try body(UnsafeRawBufferPointer(rebasing: all[range]))
    }

    /// Any floating-point tensor widened to Float (F32 copied, BF16/F16 widened exactly, F64 rounded).
    public func floats(_ name: String) throws -> [Float] {
        let info = try info(name)
        return try withRawBytes(name) { raw in
            try TensorDecoding.floats(raw, dtype: info.dtype, count: info.elementCount, file: path, tensor: name)
        }
    }

    /// Any integer tensor widened to Int64.
    public func integers(_ name: String) throws -> [Int64] {
        let info = try info(name)
        return try withRawBytes(name) { raw in
            try TensorDecoding.integers(raw, dtype: info.dtype, count: info.elementCount, file: path, tensor: name)
        }
    }

    /// A U8 tensor's bytes (MXFP4 blocks and scales).
    public func uint8s(_ name: String) throws -> [UInt8] {
        let info = try info(name)
        guard info.dtype == .u8 else {
            throw EngineError.unexpectedTensor(file: path, tensor: name, reason: "expected U8, found \(info.dtype.rawValue)")
        }
        return try withRawBytes(name) { Array($0) }
    }
}
