import Foundation

/// One chat message, in the JSON layout of chat data sets such as HuggingFaceH4/Multilingual-Thinking:
/// `{"role": "assistant", "content": "...", "thinking": "..."}`. Unknown keys are ignored;
/// `thinking` may be absent or null.
public struct Message: Codable, Sendable, Equatable {
    public enum Role: String, Codable, Sendable, CaseIterable {
        /// Instructions from the data set. Harmony renders them as the developer message (as
        /// gpt-oss's own chat template does); the harmony *system* message is generated from
        /// `HarmonyOptions` instead.
        case system
        case developer
        case user
        case assistant
    }

    public var role: Role
    public var content: String
    /// The assistant's chain of thought (harmony's `analysis` channel). Only meaningful for
    /// assistant messages; nil or empty means "no analysis message".
    public var thinking: String?

    public init(role: Role, content: String, thinking: String? = nil) {
        self.role = role
        self.content = content
        self.thinking = thinking
    }
}

/// An ordered list of messages: the unit a chat template renders into one training example.
public struct Conversation: Codable, Sendable, Equatable {
    public var messages: [Message]

    public init(messages: [Message]) {
        self.messages = messages
    }

    /// A single prompt/response exchange.
    public init(prompt: String, response: String, system: String? = nil) {
        var messages: [Message] = []
        if let system { messages.append(Message(role: .system, content: system)) }
        messages.append(Message(role: .user, content: prompt))
        messages.append(Message(role: .assistant, content: response))
        self.messages = messages
    }
}

/// Token ids plus the loss mask a trainer needs. `lossMask[i]` is true when token `i` is a
/// label: the model is trained to produce `tokens[i]` from `tokens[0 ..< i]`.
public struct RenderedExample: Sendable, Equatable {
    public var tokens: [Int32]
    public var lossMask: [Bool]

    public init(tokens: [Int32], lossMask: [Bool]) {
        self.tokens = tokens
        self.lossMask = lossMask
    }

    /// Number of tokens that carry loss.
    public var trainedTokenCount: Int { lossMask.reduce(0) { $0 + ($1 ? 1 : 0) } }

    /// Appends `ids`, all with the same mask value.
    mutating func append(_ ids: [Int32], trained: Bool) {
        tokens.append(contentsOf: ids)
        lossMask.append(contentsOf: repeatElement(trained, count: ids.count))
    }
}
