import Foundation

/// Turns one parsed row (CSV record or JSON object) into a `Conversation`, or nil when the
/// row is empty. Every problem with a row becomes an error naming the file and line.
struct RowMapper {
    let spec: DatasetSpec
    /// The file being read (the spec's `path` or `valPath`), for error messages.
    let path: String
    let promptTemplate: FieldTemplate
    let responseTemplate: FieldTemplate
    /// Whether prompt/response come from templates (which accept numbers, booleans and lists
    /// of scalars) rather than mapped columns (which must be strings).
    let templated: (prompt: Bool, response: Bool)

    init(spec: DatasetSpec, path: String) throws(TextError) {
        self.spec = spec
        self.path = path
        // A mapped column is the template "{column}"; braces in column names are taken literally.
        promptTemplate = try spec.promptTemplate.map { (t) throws(TextError) in try FieldTemplate(t) }
            ?? FieldTemplate(pieces: [.column(spec.fields.prompt)])
        responseTemplate = try spec.responseTemplate.map { (t) throws(TextError) in try FieldTemplate(t) }
            ?? FieldTemplate(pieces: [.column(spec.fields.response)])
        templated = (spec.promptTemplate != nil, spec.responseTemplate != nil)
    }

    /// A prompt/response row (csv, jsonl).
    func exchange(_ row: [String: JSONValue], line: Int) throws(TextError) -> Conversation? {
        let prompt = try promptTemplate.fill { (c) throws(TextError) in try text(row, c, line, lenient: templated.prompt) }
        let response = try responseTemplate.fill { (c) throws(TextError) in try text(row, c, line, lenient: templated.response) }
        if isBlank(prompt) || isBlank(response) { return nil }
        var messages: [Message] = []
        if let column = spec.fields.system {
            let system = try text(row, column, line, lenient: false)
            if !isBlank(system) { messages.append(Message(role: .system, content: system)) }
        }
        var thinking: String?
        if let column = spec.fields.thinking {
            thinking = try text(row, column, line, lenient: false)
        }
        messages.append(Message(role: .user, content: prompt))
        messages.append(Message(role: .assistant, content: response, thinking: thinking))
        return Conversation(messages: messages)
    }

    /// A chat row: `{"messages": [{"role": ..., "content": ..., "thinking": ...}, ...]}`.
    func chat(_ row: [String: JSONValue], line: Int) throws(TextError) -> Conversation? {
        let key = spec.fields.messages
        func fail(_ reason: String) -> TextError { .malformedRow(path: path, line: line, reason: reason) }
        guard let value = row[key] else { throw fail("missing field \"\(key)\"") }
        guard case let .array(list) = value else { throw fail("field \"\(key)\": expected a list, found \(value.typeName)") }
        var messages: [Message] = []
        for (index, item) in list.enumerated() {
            let at = "\(key)[\(index)]"
            guard case let .object(fields) = item else { throw fail("\(at): expected an object, found \(item.typeName)") }
            guard case let .string(roleName)? = fields["role"] else { throw fail("\(at).role: expected a string") }
            guard let role = Message.Role(rawValue: roleName) else {
                let allowed = Message.Role.allCases.map(\.rawValue).joined(separator: ", ")
                throw fail("\(at).role: \(roleName.debugDescription) is not one of \(allowed)")
            }
            guard case let .string(content)? = fields["content"] else {
                throw fail("\(at).content: expected a string, found \(fields["content"]?.typeName ?? "nothing")")
            }
            var thinking: String?
            switch fields["thinking"] {
            case nil, .null?: thinking = nil
            case let .string(text)?: thinking = text
            case let other?: throw fail("\(at).thinking: expected a string or null, found \(other.typeName)")
            }
            messages.append(Message(role: role, content: content, thinking: thinking))
        }
        let hasAnswer = messages.contains { $0.role == .assistant && !isBlank($0.content) }
        return hasAnswer ? Conversation(messages: messages) : nil
    }

    /// The text of `column`. Mapped columns must be strings; template placeholders also take
    /// numbers, booleans and lists of those (joined with ", ", e.g. a `tags` list).
    private func text(_ row: [String: JSONValue], _ column: String, _ line: Int, lenient: Bool) throws(TextError) -> String {
        guard let value = row[column] else {
            throw .malformedRow(path: path, line: line, reason: "missing field \"\(column)\"")
        }
        if case let .string(s) = value { return s }
        if lenient, let s = RowMapper.scalarText(value) { return s }
        if lenient, case let .array(items) = value {
            let parts = items.compactMap(RowMapper.scalarText)
            if parts.count == items.count { return parts.joined(separator: ", ") }
        }
        throw .malformedRow(path: path, line: line, reason:
            "field \"\(column)\": expected a string\(lenient ? ", number, boolean or list of those" : ""), found \(value.typeName)")
    }

    private static func scalarText(_ value: JSONValue) -> String? {
        switch value {
        case let .string(s): return s
        case let .int(i): return String(i)
        case let .double(d): return String(d)
        case let .bool(b): return b ? "true" : "false"
        default: return nil
        }
    }

    private func isBlank(_ s: String) -> Bool {
        s.unicodeScalars.allSatisfy(\.properties.isWhitespace)
    }
}

extension FieldTemplate {
    /// A template from already-parsed pieces (used for plain column mappings).
    init(pieces: [Piece]) {
        self.pieces = pieces
    }
}
