import Foundation

/// How a conversation becomes tokens and a loss mask.
public enum ChatTemplate: Sendable, Equatable {
    /// gpt-oss's harmony format (see `HarmonyRenderer` for the exact layout and mask).
    case harmony(HarmonyOptions)
    /// The `<|im_start|>` (ChatML) template of the NuminaMath recipe, with an optional default
    /// system prompt (see `ImStartRenderer`).
    case imStart(system: String?)

    /// Renders `conversation` for training.
    public func render(_ conversation: Conversation, tokenizer: Tokenizer) throws(TextError) -> RenderedExample {
        switch self {
        case let .harmony(options):
            return try HarmonyRenderer(tokenizer: tokenizer, options: options).render(conversation)
        case let .imStart(system):
            return try ImStartRenderer(tokenizer: tokenizer, system: system).render(conversation)
        }
    }
}
