import Foundation

/// Where a data set lives, how its rows map onto conversations, which chat template renders
/// them, and how they are split. Decodes from the `dataset` section of a validated job
/// (docs/job-spec.md), with `seed` and `max_seq_len` taken from the job's `train` section.
///
/// Formats:
/// - `csv`: RFC 4180 with a header row (NuminaMath-TIR style: `problem`, `solution` columns).
/// - `jsonl`: one JSON object per line, e.g. `{"prompt": ..., "response": ...}`. The flat
///   Multilingual-Thinking columns work through `fields`:
///   `{prompt: user, response: final, system: developer, thinking: analysis}`.
/// - `chat`: one JSON object per line holding a `messages` list of `{role, content, thinking?}`
///   (the Multilingual-Thinking `messages` layout).
///
/// For `csv` and `jsonl` a row becomes a one-exchange conversation: the prompt and response
/// come from the columns named in `fields`, or from `promptTemplate` / `responseTemplate`
/// (`"Give me a quote about {tags}"`, `"{quote} - {author}"`) when those are set.
public struct DatasetSpec: Sendable, Equatable {
    public enum Format: String, Sendable, Codable, CaseIterable {
        case csv, jsonl, chat
    }

    public enum Template: String, Sendable, Codable, CaseIterable {
        case harmony
        case imStart = "im_start"
    }

    /// Role → column / key names (`fields: {prompt: problem, response: solution}`).
    public struct Fields: Sendable, Equatable {
        /// Column holding the user prompt (csv, jsonl).
        public var prompt: String
        /// Column holding the assistant response (csv, jsonl).
        public var response: String
        /// Optional column holding a per-row system prompt (csv, jsonl).
        public var system: String?
        /// Optional column holding the assistant's reasoning (csv, jsonl; harmony analysis).
        public var thinking: String?
        /// Key of the message list (chat).
        public var messages: String

        public init(prompt: String = "prompt", response: String = "response", system: String? = nil,
                    thinking: String? = nil, messages: String = "messages") {
            self.prompt = prompt
            self.response = response
            self.system = system
            self.thinking = thinking
            self.messages = messages
        }

        /// NuminaMath-TIR's columns.
        public static let problemSolution = Fields(prompt: "problem", response: "solution")
    }

    public var path: String
    public var format: Format
    public var template: Template
    public var fields: Fields
    /// Overrides `fields.prompt` with a `{column}` template (csv, jsonl).
    public var promptTemplate: String?
    /// Overrides `fields.response` with a `{column}` template (csv, jsonl).
    public var responseTemplate: String?
    /// System prompt for conversations that have none: the `im_start` system message, or the
    /// harmony developer instructions (gpt-oss's own template maps "system" there too).
    public var system: String?
    /// A separate validation file in the same format. When set, `path` is all training data
    /// and `valFraction` is not used.
    public var valPath: String?
    /// Harmony `Reasoning:` level: `low`, `medium` or `high` (case-insensitive).
    public var reasoningEffort: String?
    /// Harmony `Current date:` (e.g. "2025-06-28"), pinned per sweep; omitted when nil.
    public var date: String?
    /// Fraction of examples held out for validation, in [0, 1).
    public var valFraction: Double
    /// Seed of the split's shuffle (see `DatasetSplit`); the job's `train.seed`.
    public var seed: UInt64
    /// Examples longer than this many tokens are truncated (and counted); nil keeps all.
    /// The job's `train.max_seq_len`.
    public var maxSeqLen: Int?

    public init(path: String, format: Format = .jsonl, template: Template = .harmony, fields: Fields = Fields(),
                promptTemplate: String? = nil, responseTemplate: String? = nil, system: String? = nil,
                valPath: String? = nil, reasoningEffort: String? = nil, date: String? = nil,
                valFraction: Double = 0, seed: UInt64 = 0, maxSeqLen: Int? = nil) {
        self.path = path
        self.format = format
        self.template = template
        self.fields = fields
        self.promptTemplate = promptTemplate
        self.responseTemplate = responseTemplate
        self.system = system
        self.valPath = valPath
        self.reasoningEffort = reasoningEffort
        self.date = date
        self.valFraction = valFraction
        self.seed = seed
        self.maxSeqLen = maxSeqLen
    }

    /// The chat template this spec asks for. The date is only ever the spec's `date`.
    public func chatTemplate() throws(TextError) -> ChatTemplate {
        switch template {
        case .imStart:
            return .imStart(system: system)
        case .harmony:
            var effort: HarmonyOptions.ReasoningEffort? = .medium
            if let text = reasoningEffort {
                guard let parsed = HarmonyOptions.ReasoningEffort(rawValue: text.lowercased()) else {
                    throw .invalidSpec(reason: "reasoning_effort must be low, medium or high, got \(text.debugDescription)")
                }
                effort = parsed
            }
            return .harmony(HarmonyOptions(reasoningEffort: effort, currentDate: date, developerInstructions: system))
        }
    }

    /// Rejects inconsistent specs before any file is read.
    func validate() throws(TextError) {
        guard valFraction >= 0, valFraction < 1 else {
            throw .invalidSpec(reason: "val_fraction must be in [0, 1), got \(valFraction)")
        }
        if let maxSeqLen, maxSeqLen < 1 {
            throw .invalidSpec(reason: "max_seq_len must be at least 1, got \(maxSeqLen)")
        }
        if format == .chat, promptTemplate != nil || responseTemplate != nil {
            throw .invalidSpec(reason: "prompt_template/response_template do not apply to the chat format")
        }
        for template in [promptTemplate, responseTemplate].compactMap({ $0 }) {
            _ = try FieldTemplate(template)
        }
    }
}
