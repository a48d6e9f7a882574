import Foundation
import Logging
import NIOConcurrencyHelpers

/// The coordinator's own disk trouble (full, read-only, an I/O error). It is the coordinator's
/// fault, not a job's or a worker's: the senders get `storage_unavailable` and retry, the log
/// says so loudly (once per 10 s, not once per refused chunk), `tuna status` and `tuna workers`
/// show it, and when writes work again the running leases are extended, since their heartbeats
/// could not be recorded meanwhile.
final class StorageHealth: Sendable {
    struct Problem: Sendable {
        var sinceMs: Int64
        var message: String
        var refusals: Int
    }
    private struct State {
        var problem: Problem?
        var lastLog = Date.distantPast
        var unloggedRefusals = 0
    }
    private let state = NIOLockedValueBox(State())
    let dataDir: URL
    let log: Logger

    init(dataDir: URL, log: Logger) { self.dataDir = dataDir; self.log = log }

    var problem: Problem? { state.withLockedValue { $0.problem } }

    /// A write was refused for want of storage.
    func failed(_ message: String, nowMs: Int64) {
        let line: String? = state.withLockedValue { s in
            if s.problem == nil { s.problem = Problem(sinceMs: nowMs, message: message, refusals: 0) }
            s.problem?.refusals += 1
            s.problem?.message = message
            s.unloggedRefusals += 1
            guard Date().timeIntervalSince(s.lastLog) >= 10 else { return nil }
            defer { s.lastLog = Date(); s.unloggedRefusals = 0 }
            return "\(s.unloggedRefusals) write(s) refused"
        }
        if let line {
            log.critical("STORAGE: \(line): \(message); \(freeSpace) free in \(dataDir.path). Jobs wait and workers keep their files until there is room.")
        }
    }

    /// Writes work again: clears the problem and says for how long it lasted.
    func recovered(nowMs: Int64) {
        guard let was = state.withLockedValue({ s -> Problem? in defer { s.problem = nil }; return s.problem }) else { return }
        log.warning("STORAGE: writable again after \((nowMs - was.sinceMs) / 1000) s (\(was.refusals) writes were refused); running leases extended")
    }

    /// Bytes free for the coordinator on the data directory's file system.
    var freeBytes: Int64? {
        var s = statvfs()
        guard statvfs(dataDir.path, &s) == 0 else { return nil }
        return Int64(s.f_bavail) * Int64(s.f_frsize)
    }

    private var freeSpace: String {
        freeBytes.map { ByteCountFormatter.string(fromByteCount: $0, countStyle: .binary) } ?? "unknown space"
    }
}
