import Foundation
import TunaCore
import TunaEngine
import TunaText

/// A job's task evaluation (the spec's `eval`): the first `count` validation conversations,
/// each cut before its last assistant message, are answered by the model (harmony prompts
/// parsed back into channels), the `final` channel's answer is graded against the cut-off
/// reply (`AnswerRule`), and every graded answer is a `sample` event.
struct TaskEvaluation {
    struct Prompt { var tokens: [Int32], text: String, reference: String }

    let settings: JobSpec.Eval
    let template: ChatTemplate
    let tokenizer: Tokenizer
    let prompts: [Prompt]

    init(job: TrainJob, settings: JobSpec.Eval) throws {
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
        let g = settings.generate
        let generator = Generator(model: model, adapter: adapter)
        let sampling = SamplingSettings(temperature: g.temperature, topK: g.topK, topP: g.topP, seed: UInt64(g.seed))
        let stops = template.stopTokens(tokenizer: tokenizer)
        var correct = 0, answered = 0
        for start in stride(from: 0, to: prompts.count, by: g.batchSize) {
            let group = Array(prompts[start..<min(prompts.count, start + g.batchSize)])
            let replies = try generator.generate(prompts: group.map(\.tokens), maxNewTokens: g.maxNewTokens, stopTokens: stops,
                                                 sampling: sampling, firstStream: start,
                                                 isComplete: { _, tokens in template.replyIsComplete(tokens, tokenizer: tokenizer) })
            for (offset, (prompt, reply)) in zip(group, replies).enumerated() {
                // An untrained model's reply may not parse as harmony: then it has no final channel.
                let messages = (try? template.parseReply(reply.tokens, tokenizer: tokenizer)) ?? []
                let final = messages.last { $0.channel == "final" }?.text
                let graded = settings.answer.grade(reply: final, reference: prompt.reference)
                if graded.correct { correct += 1 }
                if graded.answer != nil { answered += 1 }
                var event: [String: JSONValue] = [
                    "event": TrainerEvent.Kind.sample.json, "step": .int(step), "model": .string(adapter == nil ? "base" : "adapter"),
                    "index": .int(start + offset), "prompt": .string(prompt.text), "reference": .string(prompt.reference),
                    "final": final.map(JSONValue.string) ?? .null, "answer": graded.answer.map(JSONValue.string) ?? .null,
                    "expected": .string(graded.expected), "correct": .bool(graded.correct),
                    "completion_tokens": .int(reply.tokens.count), "finish": .string(reply.finish.rawValue),
                ]
                if let analysis = messages.last(where: { $0.channel == "analysis" })?.text { event["analysis"] = .string(analysis) }
                if messages.isEmpty { event["text"] = .string((try? tokenizer.decode(reply.tokens)) ?? "") }
                emit(event)
            }
        }
        let n = Double(prompts.count)
        return ["exact_match": .number(Double(correct) / n), "answered": .number(Double(answered) / n)]
    }
}
