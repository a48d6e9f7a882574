import ArgumentParser
import Foundation
import TunaCore

struct GCCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gc",
        abstract: "Remove the artifacts no result or resume needs, abandoned uploads and orphaned files; report the bytes freed (admin).",
        discussion: "Kept: the adapters and outputs of succeeded attempts, the checkpoints a job that has not succeeded would resume from, and everything of running attempts. Removed: the artifacts of lost, failed, cancelled and returned attempts, superseded checkpoints, succeeded jobs' checkpoints (unless --keep-succeeded-checkpoints), uploads of ended attempts, and files nothing names. docs/operations.md, Retention.")

    @Flag(help: "Report what would be removed; remove nothing.") var dryRun = false
    @Flag(help: "Keep the checkpoints of succeeded attempts (tuna fetch --checkpoint).") var keepSucceededCheckpoints = false
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let c = try await connection.connect()
        defer { c.close() }
        let r = try await c.send(CollectGarbage(dry_run: dryRun, keep_succeeded_checkpoints: keepSucceededCheckpoints))
        if json { return printJSON(r) }
        print("\(r.dry_run ? "would remove" : "removed") \(r.artifact_records) artifact records, \(r.uploads) abandoned uploads and \(r.files) files: \(bytes(r.bytes_freed)) \(r.dry_run ? "to free" : "freed")")
    }
}
