import Foundation

/// One data set row as a conversation, before any template is applied.
public struct DatasetRow: Sendable, Equatable {
    /// 1-based line where the row starts in the file.
    public var line: Int
    public var conversation: Conversation
}

/// Reads the rows of `spec.path` as conversations (no tokenizer involved). Empty rows are
/// dropped and counted in `stats.emptyDropped`; any malformed row throws.
public func readConversations(_ spec: DatasetSpec) throws(TextError) -> (rows: [DatasetRow], stats: DatasetStats) {
    try spec.validate()
    return try readRows(spec, path: spec.path)
}

/// The validation examples as conversations, in the order `loadDataset` holds them: the rows
/// of `spec.valPath`, or the rows the deterministic split holds out of `spec.path` (one row
/// renders to one example, so the split's indices are row indices).
public func validationConversations(_ spec: DatasetSpec) throws(TextError) -> [DatasetRow] {
    try spec.validate()
    if let valPath = spec.valPath { return try readRows(spec, path: valPath).rows }
    let rows = try readRows(spec, path: spec.path).rows
    let held = DatasetSplit.validationIndices(count: rows.count, valFraction: spec.valFraction, seed: spec.seed)
    return held.sorted().map { rows[$0] }
}

/// Loads a data set into tokenized training and validation examples, rendered with the
/// spec's own template (`spec.chatTemplate()`).
public func loadDataset(_ spec: DatasetSpec, tokenizer: Tokenizer) throws(TextError) -> LoadedDataset {
    try loadDataset(spec, tokenizer: tokenizer, template: spec.chatTemplate())
}

/// Loads a data set into tokenized training and validation examples.
///
/// Rows → conversations → `template.render` → truncation to `spec.maxSeqLen` (counted) →
/// the deterministic split (`DatasetSplit`), or, with `spec.valPath`, that file as the
/// validation set.
public func loadDataset(_ spec: DatasetSpec, tokenizer: Tokenizer, template: ChatTemplate) throws(TextError) -> LoadedDataset {
    try spec.validate()
    var stats = DatasetStats()
    let train = try renderFile(spec, path: spec.path, tokenizer: tokenizer, template: template, stats: &stats)
    var result = LoadedDataset(train: [], validation: [], stats: stats)
    if let valPath = spec.valPath {
        result.train = train
        result.validation = try renderFile(spec, path: valPath, tokenizer: tokenizer, template: template, stats: &result.stats)
    } else {
        let held = Set(DatasetSplit.validationIndices(count: train.count, valFraction: spec.valFraction, seed: spec.seed))
        for (index, example) in train.enumerated() {
            if held.contains(index) { result.validation.append(example) } else { result.train.append(example) }
        }
    }
    result.stats.trainExamples = result.train.count
    result.stats.validationExamples = result.validation.count
    return result
}

/// Reads, renders and truncates one file, adding to `stats`.
private func renderFile(_ spec: DatasetSpec, path: String, tokenizer: Tokenizer, template: ChatTemplate,
                        stats: inout DatasetStats) throws(TextError) -> [RenderedExample] {
    let (rows, fileStats) = try readRows(spec, path: path)
    stats.rowsRead += fileStats.rowsRead
    stats.emptyDropped += fileStats.emptyDropped
    var examples: [RenderedExample] = []
    examples.reserveCapacity(rows.count)
    for row in rows {
        var example: RenderedExample
        do {
            example = try template.render(row.conversation, tokenizer: tokenizer)
        } catch {
            // Template errors are about the row's content: report them at the row.
            let reason: String
            if case let .invalidConversation(r) = error { reason = r } else { reason = error.description }
            throw .malformedRow(path: path, line: row.line, reason: reason)
        }
        if let limit = spec.maxSeqLen, example.tokens.count > limit {
            example.tokens.removeSubrange(limit...)
            example.lossMask.removeSubrange(limit...)
            stats.truncated += 1
            if !example.lossMask.contains(true) { stats.withoutTrainedTokens += 1 }
        }
        stats.totalTokens += example.tokens.count
        stats.trainedTokens += example.trainedTokenCount
        examples.append(example)
    }
    return examples
}

/// Parses one file of the spec's format into conversations.
private func readRows(_ spec: DatasetSpec, path: String) throws(TextError) -> (rows: [DatasetRow], stats: DatasetStats) {
    let bytes: [UInt8]
    do {
        bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    } catch {
        throw .unreadableFile(path: path, reason: error.localizedDescription)
    }
    let mapper = try RowMapper(spec: spec, path: path)
    var stats = DatasetStats()
    var rows: [DatasetRow] = []

    switch spec.format {
    case .csv:
        let (header, records) = try CSVReader(path: path).parse(bytes)
        for record in records {
            stats.rowsRead += 1
            if record.fields.allSatisfy(\.isEmpty) {
                stats.emptyDropped += 1
                continue
            }
            var row: [String: JSONValue] = [:]
            for (name, value) in zip(header, record.fields) { row[name] = .string(value) }
            if let conversation = try mapper.exchange(row, line: record.line) {
                rows.append(DatasetRow(line: record.line, conversation: conversation))
            } else {
                stats.emptyDropped += 1
            }
        }
    case .jsonl, .chat:
        for line in try JSONLReader(path: path).parse(bytes) {
            stats.rowsRead += 1
            guard let object = line.object else {
                stats.emptyDropped += 1
                continue
            }
            let conversation = spec.format == .chat
                ? try mapper.chat(object, line: line.number)
                : try mapper.exchange(object, line: line.number)
            if let conversation {
                rows.append(DatasetRow(line: line.number, conversation: conversation))
            } else {
                stats.emptyDropped += 1
            }
        }
    }
    return (rows, stats)
}
