import Foundation

/// The ChatML-style template of the NuminaMath recipe:
///
///     <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{problem}<|im_end|>\n<|im_start|>assistant\n{solution}<|im_end|>
///
/// `<|im_start|>` and `<|im_end|>` are *not* special tokens of o200k_harmony (gpt-oss has no
/// ids for them), so they are encoded as ordinary text, e.g. `<|im_start|>` becomes a few
/// ordinary tokens. Inventing ids for them would mean training untrained embedding rows; the
/// honest choice with this vocabulary is plain text, which the model learns like any string.
///
/// Tokenization: the text is cut where the loss mask changes and each segment is encoded on
/// its own — every prompt segment ends with `<|im_start|>assistant\n` and every answer
/// segment is `{content}<|im_end|>`. The pre-tokenizer always splits after that `\n` unless
/// the answer starts with white space, so this equals encoding the whole string in almost
/// all cases, and it guarantees no token straddles the prompt/answer boundary.
///
/// Loss mask: the assistant's content and its closing `<|im_end|>`; everything else
/// (system, user turns, the `\n` between turns, the `<|im_start|>assistant\n` header) is not
/// trained. A conversation's system message, when present, replaces the template's.
struct ImStartRenderer {
    let tokenizer: Tokenizer
    let system: String?

    /// Closes every message; plain text in this vocabulary.
    static let end = "<|im_end|>"

    /// `promptForReply` appends the next assistant header (`\n<|im_start|>assistant\n`) to the
    /// last untrained text, so a generation prompt is tokenized exactly as training saw it.
    func render(_ conversation: Conversation, promptForReply: Bool = false) throws(TextError) -> RenderedExample {
        var out = RenderedExample(tokens: [], lossMask: [])
        var pending = ""  // untrained text not yet encoded
        var messages = conversation.messages
        if let system, messages.first?.role != .system, messages.first?.role != .developer {
            messages.insert(Message(role: .system, content: system), at: 0)
        }
        for (index, m) in messages.enumerated() {
            if let thinking = m.thinking, !thinking.isEmpty {
                throw .invalidConversation(reason:
                    "message \(index + 1): the im_start template has no place for \"thinking\"; use the harmony template")
            }
            if index > 0 { pending += "\n" }
            // `developer` has no ChatML role of its own; it is the system prompt.
            let role = m.role == .developer ? "system" : m.role.rawValue
            pending += "<|im_start|>\(role)\n"
            if m.role == .assistant {
                out.append(tokenizer.encode(pending), trained: false)
                out.append(tokenizer.encode(m.content + ImStartRenderer.end), trained: true)
                pending = ""
            } else {
                pending += m.content + ImStartRenderer.end
            }
        }
        if promptForReply { pending += "\n<|im_start|>assistant\n" }
        if !pending.isEmpty { out.append(tokenizer.encode(pending), trained: false) }
        return out
    }
}
