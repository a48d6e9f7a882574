import Foundation

/// Every failure TunaText reports. Each case carries where it happened (file, 1-based line
/// when the input is line-oriented) and a human-readable reason, so a sweep that dies on
/// row 48 213 of a data set says so instead of "invalid data".
public enum TextError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A tokenizer file (`.tiktoken` or `tokenizer.json`) could not be read or parsed.
    case tokenizerFile(path: String, line: Int?, reason: String)
    /// A checkpoint directory holds no tokenizer we know how to load.
    case tokenizerNotFound(directory: String, looked: [String])
    /// A data set row is malformed (bad JSON, missing column, wrong type, bad quoting...).
    case malformedRow(path: String, line: Int, reason: String)
    /// A data set file could not be read at all.
    case unreadableFile(path: String, reason: String)
    /// The data set specification itself is inconsistent (e.g. `valFraction` out of range).
    case invalidSpec(reason: String)
    /// A token id is neither in the vocabulary nor a special token.
    case unknownTokenID(Int32)
    /// A conversation cannot be rendered with the chosen template.
    case invalidConversation(reason: String)

    public var description: String {
        switch self {
        case let .tokenizerFile(path, line, reason):
            if let line { return "\(path):\(line): \(reason)" }
            return "\(path): \(reason)"
        case let .tokenizerNotFound(directory, looked):
            return "\(directory): no tokenizer found (looked for \(looked.joined(separator: ", ")))"
        case let .malformedRow(path, line, reason):
            return "\(path):\(line): \(reason)"
        case let .unreadableFile(path, reason):
            return "\(path): \(reason)"
        case let .invalidSpec(reason):
            return "invalid data set spec: \(reason)"
        case let .unknownTokenID(id):
            return "token id \(id) is not in the vocabulary"
        case let .invalidConversation(reason):
            return "invalid conversation: \(reason)"
        }
    }
}
