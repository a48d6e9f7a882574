import ArgumentParser
import Foundation
import TunaCore
import TunaEngine
import TunaTrain

/// `tuna grade`: grades another trainer's replies to a job's evaluation prompts (the torch
/// trainer answers on its GPU the prompts `tuna prepare` wrote to eval.json) with the job's own
/// template, parser and answer rule, so every trainer's exact_match means the same.
struct GradeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "grade",
        abstract: "Grade replies to a job's evaluation prompts (eval.json from tuna prepare): a sample event per reply, then {\"exact_match\": X, \"answered\": Y}.")

    @Argument(help: "The job JSON or sweep spec YAML the prompts were prepared from.") var job: String
    @Option(help: "JSON lines, one reply per prompt in order: {\"tokens\": [...], \"finish\": \"stop\"|\"length\"}.") var replies: String
    @Option(help: "The training step the replies were made at (0: the base model).") var step: Int
    @Flag(help: "The replies are the base model's (no adapter).") var base = false
    @Option(help: "With a YAML spec that expands to several jobs: which one (0-based).") var index: Int?
    @Option(help: "Relative model and data paths are resolved against this directory.") var root: String?

    func validate() throws {
        guard step >= 0 else { throw ValidationError("--step must be >= 0") }
    }

    func run() throws {
        do {
            let spec = try JobFile.load(job, index: index)
            let parsed = try TrainJob(spec: spec, root: URL(fileURLWithPath: root ?? FileManager.default.currentDirectoryPath))
            guard let settings = parsed.eval else { throw Failure("\(job): the job has no eval section") }
            let evaluation = try TaskEvaluation(job: parsed, settings: settings)
            let replies = try readReplies()
            let summary = try evaluation.grade(replies, step: step, base: base) { print(JSONValue.object($0).canonicalJSON) }
            print(JSONValue.object(summary).canonicalJSON)
        } catch let e as Failure { throw e } catch {
            throw Failure("\(error)")
        }
    }

    private func readReplies() throws -> [Generation] {
        guard let text = try? String(contentsOfFile: replies, encoding: .utf8) else { throw Failure("cannot read \(replies)") }
        return try text.split(separator: "\n").enumerated().compactMap { (i, line) in
            if line.allSatisfy(\.isWhitespace) { return nil }
            guard let o = try? JSONValue.parse(String(line)), let ids = o["tokens"]?.arrayValue,
                  let finish = o["finish"]?.stringValue.flatMap(Generation.Finish.init(rawValue:)) else {
                throw Failure("\(replies):\(i + 1): expected {\"tokens\": [ids], \"finish\": \"stop\" or \"length\"}")
            }
            let tokens = try ids.map { v -> Int32 in
                guard let n = v.intValue, let id = Int32(exactly: n), id >= 0 else { throw Failure("\(replies):\(i + 1): \(v) is not a token id") }
                return id
            }
            return Generation(tokens: tokens, finish: finish)
        }
    }
}
