import ArgumentParser
import Foundation
import TunaCore
import TunaEngine
import TunaText

/// `tuna generate`: the native engine answers prompts, with or without an adapter.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "generate",
        abstract: "Answer prompts with a checkpoint (and a LoRA adapter), on the native engine: greedy or sampled, KV-cached, batched.",
        discussion: """
        Prompts: --prompt TEXT (one user message), --data FILE (each row's conversation up to its \
        last assistant message, which is shown as the reference), or --prompt-ids FILE (JSON Lines, \
        one array of token ids per line, no template). Harmony prompts end with <|start|>assistant; \
        a reply stops at <|return|> or <|call|> and is parsed into its channels (analysis, final) as \
        openai-harmony parses it.
        """)

    @Option(help: "The checkpoint directory (config.json, safetensors, tokenizer).") var model: String
    @Option(help: "A LoRA adapter directory (PEFT layout), applied on the fly.") var adapter: String?
    @Option(help: "One user message.") var prompt: String?
    @Option(name: .customLong("prompt-ids"), help: "JSON Lines of token id arrays: prompts already tokenized (no template, no parsing).")
    var promptIDs: String?
    @OptionGroup var dataOptions: DataOptions
    @Option(help: "Harmony reasoning effort: low, medium or high.") var reasoningEffort: HarmonyOptions.ReasoningEffort = .medium
    @Option(help: "Generate at most this many tokens per prompt.") var maxNewTokens = 256
    @Option(help: "0 = greedy; otherwise sample at this temperature.") var temperature = 0.0
    @Option(help: "Sample only from the smallest set of tokens whose probability reaches P (1 = all).") var topP = 1.0
    @Option(help: "Sample only from the K most likely tokens (0 = all).") var topK = 0
    @Option(help: "Seed of the sampling (each prompt draws from its own stream).") var seed: UInt64 = 0
    @Option(help: "Use only the first N prompts of --data.") var count: Int?
    @Option(help: "Prompts decoded together.") var batchSize = 8
    @Option(name: .customLong("stop-id"), help: "Also stop at this token id (repeatable).") var stopIDs: [Int32] = []
    @Option(help: "A .tiktoken or tokenizer.json (default: the one in the checkpoint).") var tokenizer: String?
    @Flag(help: "One JSON object per prompt: tokens, messages by channel, counts, finish reason.") var json = false

    var sampling: SamplingSettings { SamplingSettings(temperature: temperature, topK: topK, topP: topP, seed: seed) }

    func validate() throws {
        guard [prompt != nil, dataOptions.data != nil, promptIDs != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give one of --prompt TEXT, --data FILE or --prompt-ids FILE")
        }
        if let problem = sampling.problem { throw ValidationError(problem) }
        guard maxNewTokens >= 1 else { throw ValidationError("--max-new-tokens must be at least 1") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
    }

    /// One prompt: its tokens and, from a data set, the reference answer.
    struct Prompt { var tokens: [Int32], reference: String? }

    func run() throws {
        do {
            guard FileManager.default.fileExists(atPath: URL(fileURLWithPath: model).appendingPathComponent("config.json").path) else {
                throw Failure("\(model): not a checkpoint directory (no config.json)")
            }
            let template = try chatTemplate()
            let tok: Tokenizer? = promptIDs == nil || template != nil ? try loadTokenizer(file: tokenizer, checkpoint: model) : nil
            let prompts = try readPrompts(template: template, tokenizer: tok)
            let checkpoint = try GptOssCheckpoint(directory: URL(fileURLWithPath: model))
            let lora = try adapter.map { try LoRAAdapter.load(directory: URL(fileURLWithPath: $0), config: checkpoint.config) }
            let engine = Generator(model: try GptOssModel(checkpoint: checkpoint, residency: .resident), adapter: lora)
            var stops = Set(stopIDs)
            if let template, let tok { stops.formUnion(template.stopTokens(tokenizer: tok)) }
            let began = Date()
            var generated = 0
            // Each batch is printed as it finishes.
            _ = try engine.generate(prompts: prompts.map(\.tokens), maxNewTokens: maxNewTokens, stopTokens: stops,
                                    sampling: sampling, batchSize: batchSize, isComplete: { tokens in
                                        guard let template, let tok else { return false }
                                        return template.replyIsComplete(tokens, tokenizer: tok)
                                    }, onBatch: { start, results in
                                        for (offset, g) in results.enumerated() {
                                            generated += g.tokens.count
                                            show(index: start + offset, prompt: prompts[start + offset], generation: g,
                                                 template: template, tokenizer: tok)
                                        }
                                    })
            let seconds = Date().timeIntervalSince(began)
            FileHandle.standardError.write(Data(String(format: "generated %d tokens for %d prompts in %.2f s (%.1f tokens/s)\n",
                                                       generated, prompts.count, seconds, Double(generated) / max(seconds, 1e-9)).utf8))
        } catch let e as ValidationError { throw e } catch let e as Failure { throw e } catch {
            throw Failure("\(error)")
        }
    }

    /// nil for --prompt-ids (no template).
    private func chatTemplate() throws -> ChatTemplate? {
        if promptIDs != nil { return nil }
        let spec = try dataOptions.spec(path: dataOptions.data ?? "")
        guard case let .harmony(options) = try spec.chatTemplate() else { return try spec.chatTemplate() }
        var chosen = options
        chosen.reasoningEffort = reasoningEffort
        return .harmony(chosen)
    }

    private func readPrompts(template: ChatTemplate?, tokenizer: Tokenizer?) throws -> [Prompt] {
        if let promptIDs {
            guard let text = try? String(contentsOfFile: promptIDs, encoding: .utf8) else { throw Failure("cannot read \(promptIDs)") }
            return try text.split(separator: "\n").enumerated().compactMap { (i, line) in
                if line.allSatisfy(\.isWhitespace) { return nil }
                guard let ids = try? JSONDecoder().decode([Int32].self, from: Data(line.utf8)), !ids.isEmpty else {
                    throw Failure("\(promptIDs):\(i + 1): expected a non-empty JSON array of token ids")
                }
                return Prompt(tokens: ids, reference: nil)
            }
        }
        guard let template, let tokenizer else { return [] }
        if let prompt {
            return [Prompt(tokens: try template.renderPrompt(Conversation(messages: [Message(role: .user, content: prompt)]),
                                                             tokenizer: tokenizer), reference: nil)]
        }
        guard let data = dataOptions.data else { return [] }
        var rows = try readConversations(try dataOptions.spec(path: data)).rows
        if let count { rows = Array(rows.prefix(count)) }
        return try rows.map { row in
            var messages = row.conversation.messages
            var reference: String?
            if let last = messages.lastIndex(where: { $0.role == .assistant }) {
                reference = messages[last].content
                messages = Array(messages[..<last])
            }
            guard messages.contains(where: { $0.role == .user }) else {
                throw Failure("\(data):\(row.line): no user message before the last assistant message")
            }
            return Prompt(tokens: try template.renderPrompt(Conversation(messages: messages), tokenizer: tokenizer), reference: reference)
        }
    }

    private func show(index: Int, prompt: Prompt, generation g: Generation, template: ChatTemplate?, tokenizer: Tokenizer?) {
        var messages: [ReplyMessage]?, parseError: String?, raw: String?
        if let template, let tokenizer {
            do { messages = try template.parseReply(g.tokens, tokenizer: tokenizer) } catch { parseError = "\(error)" }
            raw = try? tokenizer.decode(g.tokens)
        }
        if json {
            var object: [String: JSONValue] = [
                "index": .int(index), "prompt_tokens": .int(prompt.tokens.count),
                "completion_tokens": .int(g.tokens.count), "finish": .string(g.finish.rawValue),
                "tokens": .array(g.tokens.map { .int(Int($0)) }),
            ]
            if let messages {
                // ReplyMessage's own Codable form (snake_case; absent fields left out)
                object["messages"] = (try? JSONValueEncoder().encode(messages)) ?? .null
                for channel in ["analysis", "final"] {
                    if let m = messages.last(where: { $0.channel == channel }) { object[channel] = .string(m.text) }
                }
            }
            if let parseError { object["parse_error"] = .string(parseError) }
            if let raw { object["text"] = .string(raw) }
            if let r = prompt.reference { object["reference"] = .string(r) }
            print(JSONValue.object(object).canonicalJSON)
            return
        }
        print("── prompt \(index + 1): \(prompt.tokens.count) tokens in, \(g.tokens.count) out (\(g.finish.rawValue))")
        if let messages {
            for m in messages { print("[\(m.channel ?? m.role)] \(m.text)") }
        } else if let raw {
            print("[unparsed: \(parseError ?? "")] \(raw)")
        } else {
            print(g.tokens.map(String.init).joined(separator: " "))
        }
        if let r = prompt.reference { print("[reference] \(r)") }
    }
}

extension HarmonyOptions.ReasoningEffort: ExpressibleByArgument {}
