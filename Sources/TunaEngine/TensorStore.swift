import Foundation

/// All tensors of a checkpoint directory, whether it is one `model.safetensors` or shards
/// listed by `model.safetensors.index.json` (`{"weight_map": {tensor: shard file}}`).
/// Shards are memory-mapped once; lookups route to the shard that holds the tensor.
public struct TensorStore: Sendable {
    public let directory: URL
    private let files: [SafeTensorsFile]
    private let owner: [String: Int]  // tensor name -> index into files

    public static let singleFileName = "model.safetensors"
    public static let indexFileName = "model.safetensors.index.json"

    public init(directory: URL) throws {
        self.directory = directory
        let fm = FileManager.default
        let index = directory.appendingPathComponent(Self.indexFileName)
        var shardNames: [String]
        var declared: [String: String] = [:]
        if fm.fileExists(atPath: index.path) {
            declared = try Self.readIndex(index)
            shardNames = Array(Set(declared.values)).sorted()
        } else if fm.fileExists(atPath: directory.appendingPathComponent(Self.singleFileName).path) {
            shardNames = [Self.singleFileName]
        } else {
            // Some exporters write other names: take every *.safetensors in the directory.
            let listing = (try? fm.contentsOfDirectory(atPath: directory.path)) ?? []
            shardNames = listing.filter { $0.hasSuffix(".safetensors") }.sorted()
            guard !shardNames.isEmpty else {
                throw EngineError.io(file: directory.path, reason: "no \(Self.singleFileName), \(Self.indexFileName) or *.safetensors")
            }
        }
        var files: [SafeTensorsFile] = []
        var owner: [String: Int] = [:]
        for shard in shardNames {
            guard !shard.contains("/") else {
                throw EngineError.corruptHeader(file: index.path, reason: "shard name '\(shard)' is not a plain file name")
            }
            let file = try SafeTensorsFile(path: directory.appendingPathComponent(shard).path)
            for name in file.tensors.keys {
                if let other = owner[name] {
                    throw EngineError.badTensor(file: file.path, tensor: name, reason: "also present in \(files[other].path)")
                }
                owner[name] = files.count
            }
            files.append(file)
        }
        // The index must not promise tensors that its shards do not hold.
        for (name, shard) in declared {
            guard let i = owner[name], files[i].path.hasSuffix("/" + shard) else {
                throw EngineError.missingTensor(file: directory.appendingPathComponent(shard).path, tensor: name)
            }
        }
        self.files = files
        self.owner = owner
    }

    private static func readIndex(_ url: URL) throws -> [String: String] {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw EngineError.io(file: url.path, reason: "cannot read") }
        struct Index: Decodable { let weight_map: [String: String] }
        do { return try JSONDecoder().decode(Index.self, from: data).weight_map } catch {
            throw EngineError.corruptHeader(file: url.path, reason: "not a safetensors index (need weight_map): \(error)")
        }
    }

    public var names: [String] { owner.keys.sorted() }

    public func contains(_ name: String) -> Bool { owner[name] != nil }

    /// The file holding `name`, or a missing-tensor error naming the directory.
    public func file(for name: String) throws -> SafeTensorsFile {
        guard let i = owner[name] else { throw EngineError.missingTensor(file: directory.path, tensor: name) }
        return files[i]
    }

    public func info(_ name: String) throws -> TensorInfo { try file(for: name).info(name) }

    /// A floating-point tensor as Float, checked against the shape the model expects.
    public func floats(_ name: String, shape: [Int]) throws -> [Float] {
        let f = try file(for: name)
        let info = try f.info(name)
        guard info.shape == shape else {
            throw EngineError.unexpectedTensor(file: f.path, tensor: name, reason: "shape \(info.shape), expected \(shape)")
        }
        return try f.floats(name)
    }

    /// A U8 tensor (MXFP4 blocks/scales), checked against the expected shape.
    public func uint8s(_ name: String, shape: [Int]) throws -> [UInt8] {
        let f = try file(for: name)
        let info = try f.info(name)
        guard info.shape == shape else {
            throw EngineError.unexpectedTensor(file: f.path, tensor: name, reason: "shape \(info.shape), expected \(shape)")
        }
        return try f.uint8s(name)
    }
}
