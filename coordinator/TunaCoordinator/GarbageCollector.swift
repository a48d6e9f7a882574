import Foundation
import TunaCore
import TunaStore

/// `tuna gc`: first the records retention no longer needs go (`Store.collectRecords`, one
/// transaction), then every stored file nothing names any more, each checked again right before
/// it is removed under the lock finished uploads take, and the part files of uploads that no
/// longer exist. A dry run removes nothing and reports what would go.
extension CoordinatorServer {
    func collectGarbage(_ request: CollectGarbage, by who: Actor, now: Int64) async throws -> GarbageCollected {
        let keep = request.keep_succeeded_checkpoints
        let records = try await store.collectRecords(dryRun: request.dry_run, keepSucceededCheckpoints: keep)
        var report = GarbageCollected(dry_run: request.dry_run, artifact_records: records.artifactRecords,
                                      uploads: records.abandonedUploads.count, files: 0, bytes_freed: 0)
        if request.dry_run {
            let kept = try store.referencedAfterCollection(keepSucceededCheckpoints: keep)
            let abandoned = Set(records.abandonedUploads), live = try store.uploadIDs()
            for f in artifacts.storedFiles() where !kept.contains(f.sha256) { report.files += 1; report.bytes_freed += f.size }
            for p in artifacts.partFiles() where abandoned.contains(p.upload) || !live.contains(p.upload) { report.files += 1; report.bytes_freed += p.size }
            return report
        }
        for f in artifacts.storedFiles() {
            if let freed = try artifacts.remove(sha256: f.sha256, ifUnreferenced: { try !store.isReferenced(sha256: f.sha256) }) {
                report.files += 1
                report.bytes_freed += freed
            }
        }
        // The part files first, then the uploads that exist: an upload's row is written before its
        // part file, so a part file listed here whose upload is live is in `live`.
        let parts = artifacts.partFiles()
        let live = try store.uploadIDs()
        for p in parts where !live.contains(p.upload) {
            try? FileManager.default.removeItem(at: p.url)
            report.files += 1
            report.bytes_freed += p.size
        }
        try await store.recordAudit(who, action: "gc", target: "artifacts",
                                    detail: "\(report.artifact_records) records, \(report.uploads) uploads, \(report.files) files, \(report.bytes_freed) bytes", now: now)
        log.notice("gc by \(who.name): \(report.artifact_records) artifact records, \(report.uploads) abandoned uploads, \(report.files) files, \(report.bytes_freed) bytes freed")
        return report
    }
}
