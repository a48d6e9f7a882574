import ArgumentParser
import Foundation
import TunaCore

/// `tuna contract`: the job spec published as data (contract/) for the Python trainer, which
/// applies none of its own defaults. Run `--write` after changing `JobSpec`; the test suite
/// fails while the committed folder differs from what this writes.
struct ContractCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "contract",
        abstract: "Check (or --write) contract/: the validated job spec of each kind of job and the allowed values, as JSON for the other language.")

    @Option(help: "The contract folder.") var dir = "contract"
    @Flag(help: "Rewrite the folder instead of checking it.") var write = false

    func run() throws {
        let root = URL(fileURLWithPath: dir)
        if write {
            for (path, text) in try Contract.files() {
                let url = root.appendingPathComponent(path)
                try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try Data(text.utf8).write(to: url, options: .atomic)
            }
            for stale in try Contract.stale(in: root) { try FileManager.default.removeItem(at: root.appendingPathComponent(stale)) }
            print("wrote \(dir)")
            return
        }
        let stale = try Contract.stale(in: root)
        guard stale.isEmpty else {
            throw Failure("\(dir) is out of date (\(stale.joined(separator: ", "))); run `tuna contract --write`")
        }
        print("\(dir) is up to date")
    }
}
