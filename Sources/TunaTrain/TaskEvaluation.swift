import Foundation
import TunaCore
import TunaEngine
import TunaText

/// A job's task evaluation (the spec's `eval`): the first `count` validation conversations,
/// each cut before its last assistant message, are answered by the model (harmony prompts
/// parsed back into channels), the `final` channel's answer is graded against the cut-off
/// reply (`AnswerRule`), and every graded answer is a `sample` event.
///
/// The native trainer answers with its own engine (`run`); the torch trainer answers on its
/// device from the prompts `tuna prepare` writes (`writePrompts`, eval.json) and has
/// `tuna grade` grade its replies (`grade`): one renderer, one parser, one grader.
public struct TaskEvaluation {
    struct Prompt { var tokens: [Int32], text: String, reference: String }

    public let settings: JobSpec.Eval
    let template: ChatTemplate
    let tokenizer: Tokenizer
    let prompts: [Prompt]

    public init(job: TrainJob, settings: JobSpec.Eval) throws {
        self.settings = settings
        do {
            (tokenizer, template, prompts) = try Self.load(job, settings)
        } catch {
            throw TrainError.badData("eval: \(error)")
        }
        guard !prompts.isEmpty else {
            throw TrainError.badData("eval: the validation split has no example with a user message and an assistant reply to grade")
        }
    }

    private static func load(_ job: TrainJob, _ settings: JobSpec.Eval) throws -> (Tokenizer, ChatTemplate, [Prompt]) {
        let tokenizer = try Tokenizer.load(fromCheckpoint: URL(fileURLWithPath: job.modelPath))
        var template = try job.dataset.chatTemplate()
        if case var .harmony(options) = template, let effort = settings.generate.reasoningEffort {
            options.reasoningEffort = HarmonyOptions.ReasoningEffort(rawValue: effort.rawValue)
            template = .harmony(options)
        }
        var prompts: [Prompt] = []
        for row in try validationConversations(job.dataset) where prompts.count < settings.generate.count {
            var messages = row.conversation.messages
            guard let last = messages.lastIndex(where: { $0.role == .assistant }) else { continue }
            let reference = messages[last].content
            messages.removeSubrange(last...)
            guard let user = messages.last(where: { $0.role == .user }) else { continue }
            prompts.append(Prompt(tokens: try template.renderPrompt(Conversation(messages: messages), tokenizer: tokenizer),
                                  text: user.content, reference: reference))
        }
        return (tokenizer, template, prompts)
    }

    /// Answers and grades every prompt with `model` (+ `adapter`), emitting a `sample` event per
    /// prompt; returns the eval event's fields (`exact_match`, `answered`).
    func run(_ model: GptOssModel, adapter: LoRAAdapter?, step: Int, emit: NativeTrainer.Emit) throws -> [String: JSONValue] {
        try grade(answer(model, adapter: adapter), step: step, base: adapter == nil, emit: emit)
    }

    /// The native engine's replies to every prompt, in order.
    func answer(_ model: GptOssModel, adapter: LoRAAdapter?) throws -> [Generation] {
        let g = settings.generate
        let generator = Generator(model: model, adapter: adapter)
        let sampling = SamplingSettings(temperature: g.temperature, topK: g.topK, topP: g.topP, seed: UInt64(g.seed))
        return try generator.generate(prompts: prompts.map(\.tokens), maxNewTokens: g.maxNewTokens, stopTokens: stopTokens,
                                      sampling: sampling, batchSize: g.batchSize,
                                      isComplete: { template.replyIsComplete($0, tokenizer: tokenizer) })
    }

    /// The tokens that end a reply (the template's).
    public var stopTokens: Set<Int32> { template.stopTokens(tokenizer: tokenizer) }

    /// Writes eval.json for another trainer: the prompts' token ids (in order), the stop tokens,
    /// the stop texts with the window of last tokens to look for them in (`replyIsComplete`'s
    /// rule), and a padding id (`PreparedPlan.eval`).
    public func writePrompts(to url: URL) throws {
        let pad = tokenizer.harmonyID("<|endoftext|>")
        let doc: JSONValue = [
            "format": .string(PreparedPlan.eval.format),
            "prompts": .array(prompts.map { .array($0.tokens.map { .int(Int($0)) }) }),
            "stop_tokens": .array(stopTokens.sorted().map { .int(Int($0)) }),
            "stop_texts": .array(template.stopTexts.map(JSONValue.string)),
            "stop_text_window": .int(ChatTemplate.stopTextWindow),
            "pad_token": .int(Int(pad)),
        ]
        try Data(doc.canonicalJSON.utf8).write(to: url, options: .atomic)
    }

    /// Grades `replies` (one per prompt, in order): a `sample` event each, and the eval event's
    /// fields (`exact_match`, `answered`). `base`: the replies are the base model's.
    public func grade(_ replies: [Generation], step: Int, base: Bool, emit: ([String: JSONValue]) -> Void) throws -> [String: JSONValue] {
        guard replies.count == prompts.count else {
            throw TrainError.badData("eval: \(replies.count) replies for \(prompts.count) prompts")
        }
        var correct = 0, answered = 0
        for (index, (prompt, reply)) in zip(prompts, replies).enumerated() {
            if let bad = reply.tokens.first(where: { (try? tokenizer.decodeBytes([$0])) == nil }) {
                throw TrainError.badData("eval: reply \(index + 1) has token \(bad), which the tokenizer does not know")
            }
            // An untrained model's reply may not parse as harmony: then it has no final channel.
            let messages = (try? template.parseReply(reply.tokens, tokenizer: tokenizer)) ?? []
            let final = messages.last { $0.channel == "final" }?.text
            let graded = settings.answer.grade(reply: final, reference: prompt.reference)
            if graded.correct { correct += 1 }
            if graded.answer != nil { answered += 1 }
            var event: [String: JSONValue] = [
                "event": TrainerEvent.Kind.sample.json, "step": .int(step), "model": .string(base ? "base" : "adapter"),
                "index": .int(index), "prompt": .string(prompt.text), "reference": .string(prompt.reference),
                "final": final.map(JSONValue.string) ?? .null, "answer": graded.answer.map(JSONValue.string) ?? .null,
                "expected": .string(graded.expected), "correct": .bool(graded.correct),
                "completion_tokens": .int(reply.tokens.count), "finish": .string(reply.finish.rawValue),
            ]
            if let analysis = messages.last(where: { $0.channel == "analysis" })?.text { event["analysis"] = .string(analysis) }
            if messages.isEmpty { event["text"] = .string((try? tokenizer.decode(reply.tokens)) ?? "") }
            emit(event)
        }
        let n = Double(prompts.count)
        return ["exact_match": .number(Double(correct) / n), "answered": .number(Double(answered) / n),
                "graded": .int(prompts.count)]
    }
}
