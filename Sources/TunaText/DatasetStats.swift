import Foundation

/// What loading did, so nothing is dropped or cut silently.
public struct DatasetStats: Sendable, Equatable, Codable {
    /// Data rows read (CSV records after the header, JSONL lines including blank ones),
    /// over the training file and, when given, the validation file.
    public var rowsRead = 0
    /// Rows dropped because they were empty (blank line, all-empty CSV record, empty prompt
    /// or response, or a chat without a non-empty assistant message).
    public var emptyDropped = 0
    /// Examples cut to `maxSeqLen` tokens.
    public var truncated = 0
    /// Examples kept although truncation left them without any trained token.
    public var withoutTrainedTokens = 0
    public var trainExamples = 0
    public var validationExamples = 0
    /// Tokens over all kept examples (after truncation), and how many of them carry loss.
    public var totalTokens = 0
    public var trainedTokens = 0

    public init() {}

    private enum CodingKeys: String, CodingKey {
        case rowsRead = "rows_read", emptyDropped = "empty_dropped", truncated
        case withoutTrainedTokens = "without_trained_tokens", trainExamples = "train_examples"
        case validationExamples = "validation_examples", totalTokens = "total_tokens", trainedTokens = "trained_tokens"
    }
}

/// The result of `loadDataset`.
public struct LoadedDataset: Sendable, Equatable {
    public var train: [RenderedExample]
    public var validation: [RenderedExample]
    public var stats: DatasetStats
}
