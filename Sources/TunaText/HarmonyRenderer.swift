import Foundation

/// Renders a `Conversation` in the harmony format for training, token-for-token as
/// `openai_harmony`'s `render_conversation_for_training` does (checked by golden tests), and
/// computes the loss mask.
///
/// Layout (each text part is encoded on its own, as harmony does):
///
///     <|start|>system<|message|>{HarmonyOptions.systemText}<|end|>
///     <|start|>developer<|message|># Instructions\n\n{instructions}<|end|>      (if any)
///     <|start|>user<|message|>{content}<|end|>
///     <|start|>assistant<|channel|>analysis<|message|>{thinking}<|end|>          (if thinking)
///     <|start|>assistant<|channel|>final<|message|>{content}<|end|>
///
/// and, as in harmony, a final `<|end|>` of an assistant `final` message that closes the
/// conversation becomes `<|return|>`.
///
/// Loss mask: exactly the tokens the model itself samples at inference time, where the
/// prompt is rendered up to `<|start|>assistant`. For each assistant message that is
///   - the first of its turn (follows a user/developer/system message): everything after
///     `<|start|>assistant` — `<|channel|>`, the channel name, `<|message|>`, the content
///     and the closing `<|end|>`/`<|return|>`;
///   - a continuation (follows another assistant message, e.g. `final` after `analysis`):
///     the whole message including `<|start|>assistant`, because the model emits those
///     tokens itself after its `<|end|>`.
/// Training the closing token teaches the model to stop; not training the opening
/// `<|start|>assistant` of a turn matches inference, where the caller supplies it.
struct HarmonyRenderer {
    let tokenizer: Tokenizer
    let options: HarmonyOptions

    /// One harmony message before tokenization.
    private struct Part {
        var role: String
        var channel: String?
        var text: String
    }

    func render(_ conversation: Conversation) throws(TextError) -> RenderedExample {
        var parts = try harmonyMessages(conversation)
        if options.autoDropAnalysis { parts = dropAnalysisLikeHarmony(parts) }

        let start = tokenizer.harmonyID("<|start|>"), channel = tokenizer.harmonyID("<|channel|>")
        let message = tokenizer.harmonyID("<|message|>"), end = tokenizer.harmonyID("<|end|>")
        var out = RenderedExample(tokens: [], lossMask: [])
        var previousRole: String?
        for part in parts {
            let isAssistant = part.role == "assistant"
            let continuation = isAssistant && previousRole == "assistant"
            out.append([start], trained: continuation)
            out.append(tokenizer.encode(part.role), trained: continuation)
            if let name = part.channel {
                out.append([channel], trained: isAssistant)
                out.append(tokenizer.encode(name), trained: isAssistant)
            }
            out.append([message], trained: isAssistant)
            out.append(tokenizer.encode(part.text), trained: isAssistant)
            out.append([end], trained: isAssistant)
            previousRole = part.role
        }
        if let last = parts.last, last.role == "assistant", last.channel == "final", !out.tokens.isEmpty {
            out.tokens[out.tokens.count - 1] = tokenizer.harmonyID("<|return|>")
        }
        return out
    }

    /// Maps the data set's messages onto harmony messages.
    private func harmonyMessages(_ conversation: Conversation) throws(TextError) -> [Part] {
        var parts = [Part(role: "system", channel: nil, text: options.systemText)]
        var instructions: String?
        var body: [Part] = []
        for (index, m) in conversation.messages.enumerated() {
            switch m.role {
            case .system, .developer:
                // Only a leading instruction message has an unambiguous place in harmony.
                guard body.isEmpty, instructions == nil else {
                    throw .invalidConversation(reason:
                        "message \(index + 1): a \(m.role.rawValue) message is only allowed first (harmony has one developer message)")
                }
                instructions = m.content
            case .user:
                if let thinking = m.thinking, !thinking.isEmpty {
                    throw .invalidConversation(reason: "message \(index + 1): a user message has \"thinking\"")
                }
                body.append(Part(role: "user", channel: nil, text: m.content))
            case .assistant:
                if let thinking = m.thinking, !thinking.isEmpty {
                    body.append(Part(role: "assistant", channel: "analysis", text: thinking))
                }
                body.append(Part(role: "assistant", channel: "final", text: m.content))
            }
        }
        if let text = instructions ?? options.developerInstructions {
            parts.append(Part(role: "developer", channel: nil, text: "# Instructions\n\n" + text))
        }
        return parts + body
    }

    /// harmony's `auto_drop_analysis`: when the last assistant message is `final`, drop the
    /// analysis messages that come before the first `final` message.
    private func dropAnalysisLikeHarmony(_ parts: [Part]) -> [Part] {
        guard parts.last(where: { $0.role == "assistant" })?.channel == "final",
              let firstFinal = parts.firstIndex(where: { $0.channel == "final" })
        else { return parts }
        return parts.enumerated().filter { $0.offset >= firstFinal || $0.element.channel != "analysis" }.map(\.element)
    }
}
