import Foundation

/// Every failure the engine reports. Each case names the file (and tensor where there is one)
/// so a bad checkpoint is diagnosed from the message alone; nothing here ever traps.
public enum EngineError: Error, Equatable, CustomStringConvertible {
    /// The file could not be opened, stat'ed or mapped.
    case io(file: String, reason: String)
    /// The safetensors container itself is malformed (length prefix, JSON, layout).
    case corruptHeader(file: String, reason: String)
    /// One tensor's header entry is malformed or inconsistent with the data section.
    case badTensor(file: String, tensor: String, reason: String)
    /// A tensor the model needs is not in the checkpoint.
    case missingTensor(file: String, tensor: String)
    /// A tensor has the wrong shape or dtype for the role the model gives it.
    case unexpectedTensor(file: String, tensor: String, reason: String)
    /// config.json is missing, unparsable or describes a model this engine cannot run.
    case badConfig(file: String, reason: String)
    /// The caller's batch is inconsistent (ragged rows, token id out of range...).
    case badInput(reason: String)

    public var description: String {
        switch self {
        case let .io(file, reason): return "\(file): \(reason)"
        case let .corruptHeader(file, reason): return "\(file): corrupt safetensors header: \(reason)"
        case let .badTensor(file, tensor, reason): return "\(file): tensor '\(tensor)': \(reason)"
        case let .missingTensor(file, tensor): return "\(file): missing tensor '\(tensor)'"
        case let .unexpectedTensor(file, tensor, reason): return "\(file): tensor '\(tensor)': \(reason)"
        case let .badConfig(file, reason): return "\(file): \(reason)"
        case let .badInput(reason): return "bad input: \(reason)"
        }
    }
}
