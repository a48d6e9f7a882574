import Foundation

/// One message of a generated reply: harmony's channels (`analysis`, `commentary`, `final`),
/// and for tool calls the recipient and content type, as openai-harmony's parser reports them.
public struct ReplyMessage: Sendable, Equatable, Codable {
    public var role: String
    public var channel: String?
    public var recipient: String?
    public var contentType: String?
    public var text: String

    public init(role: String, channel: String?, recipient: String? = nil, contentType: String? = nil, text: String) {
        self.role = role
        self.channel = channel
        self.recipient = recipient
        self.contentType = contentType
        self.text = text
    }

    private enum CodingKeys: String, CodingKey {
        case role, channel, recipient, contentType = "content_type", text
    }
}

extension ChatTemplate {
    /// The tokens that ask the model for the next assistant message: the conversation as
    /// training renders it, then the assistant's header. Harmony: `<|start|>assistant`, no
    /// channel (the model picks one), with harmony's completion default `auto_drop_analysis`
    /// (earlier turns' analysis before the first `final` is left out), token for token as
    /// openai-harmony's `render_conversation_for_completion`. im_start: `\n<|im_start|>assistant\n`.
    /// The conversation must not end with an assistant message.
    public func renderPrompt(_ conversation: Conversation, tokenizer: Tokenizer) throws(TextError) -> [Int32] {
        if conversation.messages.last?.role == .assistant {
            throw .invalidConversation(reason: "a generation prompt must not end with an assistant message")
        }
        switch self {
        case var .harmony(options):
            options.autoDropAnalysis = true
            let rendered = try HarmonyRenderer(tokenizer: tokenizer, options: options).render(conversation)
            return rendered.tokens + [tokenizer.harmonyID("<|start|>")] + tokenizer.encode("assistant")
        case let .imStart(system):
            return try ImStartRenderer(tokenizer: tokenizer, system: system).render(conversation, promptForReply: true).tokens
        }
    }

    /// The tokens that end a reply. Harmony: `<|return|>` and `<|call|>` (openai-harmony's
    /// `stop_tokens_for_assistant_actions`; `<|end|>` only closes the analysis, after which the
    /// model writes its final message). im_start: `<|endoftext|>`; its `<|im_end|>` is plain
    /// text, see `replyIsComplete`.
    public func stopTokens(tokenizer: Tokenizer) -> Set<Int32> {
        switch self {
        case .harmony:
            return Set(HarmonySpecialTokens.assistantActionStops.map(tokenizer.harmonyID))
        case .imStart:
            return [tokenizer.harmonyID("<|endoftext|>")]
        }
    }

    /// Texts that end a reply although no single token spells them: the im_start template's
    /// `<|im_end|>` is several ordinary tokens. Harmony: none (its stops are tokens).
    public var stopTexts: [String] {
        if case .imStart = self { return [ImStartRenderer.end] }
        return []
    }

    /// How many of a reply's last tokens `replyIsComplete` decodes to look for a stop text.
    public static let stopTextWindow = 8

    /// True when a reply so far has ended without a stop token: the decoded text of its last
    /// `stopTextWindow` tokens contains a stop text.
    public func replyIsComplete(_ tokens: [Int32], tokenizer: Tokenizer) -> Bool {
        let stops = stopTexts
        guard !stops.isEmpty, let text = try? tokenizer.decode(Array(tokens.suffix(Self.stopTextWindow))) else { return false }
        return stops.contains { text.contains($0) }
    }

    /// A generated reply (the tokens after the prompt) as messages. Harmony: as openai-harmony's
    /// `parse_messages_from_completion_tokens(tokens, Role.ASSISTANT)` (strict) parses it; a
    /// reply cut off by the token limit ends in a truncated message. im_start: one `final`
    /// message, the text before `<|im_end|>`.
    public func parseReply(_ tokens: [Int32], tokenizer: Tokenizer) throws(TextError) -> [ReplyMessage] {
        switch self {
        case .harmony:
            return try HarmonyReplyParser(tokenizer: tokenizer).parse(tokens)
        case .imStart:
            let stops = stopTokens(tokenizer: tokenizer)
            var text = try tokenizer.decode(tokens.filter { !stops.contains($0) })
            if let end = text.range(of: ImStartRenderer.end) { text = String(text[..<end.lowerBound]) }
            return [ReplyMessage(role: "assistant", channel: "final", text: text)]
        }
    }
}
