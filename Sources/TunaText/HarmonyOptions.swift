import Foundation

/// What goes into the harmony system message, plus the training-render switches.
///
/// The defaults equal `openai_harmony`'s `SystemContent.new()` except `currentDate`, which is
/// nil (omitted) unless set: a sweep pins the date so that re-running it renders the same
/// tokens; TunaText never reads the clock.
public struct HarmonyOptions: Sendable, Equatable, Codable {
    public enum ReasoningEffort: String, Sendable, Codable, CaseIterable {
        case low, medium, high
    }

    /// `Reasoning: low|medium|high`; nil omits the line.
    public var reasoningEffort: ReasoningEffort?
    /// First line of the system message; nil omits it.
    public var modelIdentity: String?
    /// `Knowledge cutoff: ...`; nil omits the line.
    public var knowledgeCutoff: String?
    /// `Current date: ...` (e.g. "2025-06-28"); nil omits the line.
    public var currentDate: String?
    /// Developer instructions used when a conversation has no system/developer message.
    public var developerInstructions: String?
    /// harmony's `RenderConversationConfig.auto_drop_analysis`. When true and the last
    /// assistant message is `final`, analysis messages *before the first final message* are
    /// dropped — which, for a single-turn conversation, drops its only analysis. That is
    /// harmony's default for `render_conversation_for_training`, but fine-tuning on reasoning
    /// traces needs the analysis kept, so TunaText defaults to false.
    public var autoDropAnalysis: Bool

    public static let defaultModelIdentity = "You are ChatGPT, a large language model trained by OpenAI."
    public static let defaultKnowledgeCutoff = "2024-06"

    public init(
        reasoningEffort: ReasoningEffort? = .medium,
        modelIdentity: String? = HarmonyOptions.defaultModelIdentity,
        knowledgeCutoff: String? = HarmonyOptions.defaultKnowledgeCutoff,
        currentDate: String? = nil,
        developerInstructions: String? = nil,
        autoDropAnalysis: Bool = false
    ) {
        self.reasoningEffort = reasoningEffort
        self.modelIdentity = modelIdentity
        self.knowledgeCutoff = knowledgeCutoff
        self.currentDate = currentDate
        self.developerInstructions = developerInstructions
        self.autoDropAnalysis = autoDropAnalysis
    }

    /// snake_case, like the job spec.
    private enum CodingKeys: String, CodingKey {
        case reasoningEffort = "reasoning_effort", modelIdentity = "model_identity"
        case knowledgeCutoff = "knowledge_cutoff", currentDate = "current_date"
        case developerInstructions = "developer_instructions", autoDropAnalysis = "auto_drop_analysis"
    }

    /// Decoding distinguishes an absent key (use the default) from an explicit null (omit the
    /// line), so a config file can turn off e.g. the knowledge cutoff.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = HarmonyOptions()
        func field<T: Decodable>(_ key: CodingKeys, _ fallback: T?) throws -> T? {
            c.contains(key) ? try c.decodeIfPresent(T.self, forKey: key) : fallback
        }
        reasoningEffort = try field(.reasoningEffort, defaults.reasoningEffort)
        modelIdentity = try field(.modelIdentity, defaults.modelIdentity)
        knowledgeCutoff = try field(.knowledgeCutoff, defaults.knowledgeCutoff)
        currentDate = try field(.currentDate, defaults.currentDate)
        developerInstructions = try field(.developerInstructions, defaults.developerInstructions)
        autoDropAnalysis = try c.decodeIfPresent(Bool.self, forKey: .autoDropAnalysis) ?? false
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        // Explicit nulls, so that decoding the output gives back the same options.
        try c.encode(reasoningEffort, forKey: .reasoningEffort)
        try c.encode(modelIdentity, forKey: .modelIdentity)
        try c.encode(knowledgeCutoff, forKey: .knowledgeCutoff)
        try c.encode(currentDate, forKey: .currentDate)
        try c.encode(developerInstructions, forKey: .developerInstructions)
        try c.encode(autoDropAnalysis, forKey: .autoDropAnalysis)
    }

    /// The text of the harmony system message, section by section as openai_harmony renders it.
    var systemText: String {
        var sections: [String] = []
        var top: [String] = []
        if let modelIdentity { top.append(modelIdentity) }
        if let knowledgeCutoff { top.append("Knowledge cutoff: \(knowledgeCutoff)") }
        if let currentDate { top.append("Current date: \(currentDate)") }
        if !top.isEmpty { sections.append(top.joined(separator: "\n")) }
        if let reasoningEffort { sections.append("Reasoning: \(reasoningEffort.rawValue)") }
        sections.append("# Valid channels: analysis, commentary, final. Channel must be included for every message.")
        return sections.joined(separator: "\n\n")
    }
}
