import ArgumentParser
import Foundation
import TunaText

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tokenize",
        abstract: "Text on stdin (or, with --harmony, a conversation as JSON; or with --data, a data set file) to token ids, for debugging data.")

    @Option(help: "A .tiktoken ranks file or a tokenizer.json.") var tokenizer: String?
    @Option(help: "A checkpoint directory holding tokenizer.json or o200k_base.tiktoken.") var model: String?
    @Flag(help: "Read a conversation ({\"messages\": [...], \"harmony\": {options}}) and render it in harmony format.") var harmony = false
    @Flag(help: "Print {\"tokens\": [...], \"loss_mask\": [...]} (with --harmony).") var mask = false
    @Flag(help: "Let special-token names in plain text become their ids.") var allowSpecial = false
    @OptionGroup var dataOptions: DataOptions

    func validate() throws {
        guard (tokenizer == nil) != (model == nil) else { throw ValidationError("give --tokenizer FILE or --model DIR") }
    }

    func run() throws {
        let tok = try loadTokenizer(file: tokenizer, checkpoint: model)
        if let data = dataOptions.data {
            // One line per example, as the trainers will see it: {"tokens": [...], "loss_mask": [...]}.
            for ex in try dataOptions.examples(path: data, tokenizer: tok) {
                print("{\"tokens\": \(list(ex.tokens)), \"loss_mask\": [\(ex.lossMask.map { $0 ? "1" : "0" }.joined(separator: ","))]}")
            }
            return
        }
        let input = FileHandle.standardInput.readDataToEndOfFile()
        if harmony {
            struct Input: Decodable { var messages: [Message]; var harmony: HarmonyOptions? }
            let parsed: Input
            do { parsed = try JSONDecoder().decode(Input.self, from: input) } catch {
                throw Failure("stdin is not a conversation {\"messages\": [{\"role\", \"content\", \"thinking\"?}], \"harmony\"?: {...}}: \(error)")
            }
            let r: RenderedExample
            do { r = try ChatTemplate.harmony(parsed.harmony ?? HarmonyOptions()).render(Conversation(messages: parsed.messages), tokenizer: tok) }
            catch { throw Failure("\(error)") }
            print(mask ? "{\"tokens\": \(list(r.tokens)), \"loss_mask\": [\(r.lossMask.map { $0 ? "1" : "0" }.joined(separator: ","))]}" : list(r.tokens))
            return
        }
        let text = String(decoding: input, as: UTF8.self)
        print(list(allowSpecial ? tok.encode(text, allowedSpecial: .all) : tok.encode(text)))
    }

    private func list(_ ids: [Int32]) -> String { "[" + ids.map(String.init).joined(separator: ",") + "]" }
}
