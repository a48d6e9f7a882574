import ArgumentParser
import Foundation
import TunaCoordinator

struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "backup",
        abstract: "Back up a coordinator's data directory while it runs (run it on the coordinator's machine).",
        discussion: "The backup is a data directory of its own: a consistent snapshot of the database and every artifact it names, each checked against its SHA-256. Backing up into the same folder again copies only the new artifacts.")

    @Option(help: "The coordinator's data directory.") var dataDir = "tuna-data"
    @Option(help: "The backup folder (created if needed).") var out: String
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let s = try Backup.take(dataDir: URL(fileURLWithPath: dataDir), out: URL(fileURLWithPath: out))
        if json { return printJSON(["artifacts": Int64(s.artifacts), "copied": Int64(s.copied), "bytes_copied": s.bytesCopied]) }
        print("backed up \(dataDir) to \(out): database snapshot, \(s.artifacts) artifacts (\(s.copied) copied, \(bytes(s.bytesCopied)))")
    }
}

struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "restore",
        abstract: "Restore a backup into an empty data directory, checking it; then start a coordinator there.")

    @Option(help: "The backup folder (`tuna backup --out`).") var from: String
    @Option(help: "The new data directory (must hold no database yet).") var dataDir: String
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let s = try Backup.restore(from: URL(fileURLWithPath: from), dataDir: URL(fileURLWithPath: dataDir))
        if json { return printJSON(["artifacts": Int64(s.artifacts), "bytes_copied": s.bytesCopied]) }
        print("restored \(from) into \(dataDir): database checked, \(s.artifacts) artifacts checked and copied (\(bytes(s.bytesCopied)));"
              + " start it with: tuna coordinator --data-dir \(dataDir)")
    }
}
