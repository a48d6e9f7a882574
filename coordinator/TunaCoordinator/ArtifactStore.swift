import Crypto
import Foundation
import NIOConcurrencyHelpers
import TunaCore

/// Artifact bytes on disk, content-addressed: `artifacts/ab/abcdef…` by SHA-256. An upload
/// is written to `uploads/<id>.part`, each chunk checked against its own digest and synced
/// before it is acknowledged; the whole file is checked against the declared digest before
/// it is renamed into place. A crash at any point leaves either the old state or the new.
public struct ArtifactStore: Sendable {
    public let root: URL
    /// Held while a finished upload takes its content address and while `tuna gc` removes one,
    /// so that gc never deletes a file an upload has just found in place.
    private let placing = NIOLock()

    public init(dataDir: URL) throws {
        root = dataDir
        for sub in ["artifacts", "uploads"] {
            try FileManager.default.createDirectory(at: dataDir.appendingPathComponent(sub), withIntermediateDirectories: true)
        }
    }

    public func path(sha256: String) -> URL {
        root.appendingPathComponent("artifacts/\(sha256.prefix(2))/\(sha256)")
    }

    func partPath(upload: Int64) -> URL { root.appendingPathComponent("uploads/\(upload).part") }

    /// Makes the part file exactly `received` bytes long (bytes past the last acknowledged
    /// chunk were never verified) and returns that offset.
    func prepare(upload: Int64, received: Int64) throws -> Int64 {
        try storing("the upload") {
            let url = partPath(upload: upload)
            if !FileManager.default.fileExists(atPath: url.path) {
                guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
                    throw TunaError.io("cannot create \(url.path)")
                }
            }
            let h = try FileHandle(forWritingTo: url)
            defer { try? h.close() }
            let size = try h.seekToEnd()
            let keep = min(Int64(size), received)
            try h.truncate(atOffset: UInt64(keep))
            return keep
        }
    }

    /// Writes one verified chunk at `offset` and syncs it.
    func write(upload: Int64, offset: Int64, bytes: Data) throws {
        try storing("the chunk") {
            let h = try FileHandle(forWritingTo: partPath(upload: upload))
            defer { try? h.close() }
            try h.truncate(atOffset: UInt64(offset))
            try h.seek(toOffset: UInt64(offset))
            do {
                try h.write(contentsOf: bytes)
                try h.synchronize()
            } catch {
                // A full disk: drop the partial chunk so the acknowledged prefix stays valid.
                try? h.truncate(atOffset: UInt64(offset))
                throw error
            }
        }
    }

    /// Runs a file-system change; its failure is the coordinator's disk's (full, read-only, an
    /// I/O error), said as `storage_unavailable` so that the sender retries instead of failing.
    private func storing<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ErrorReply { throw e } catch {
            throw ErrorReply(code: .storageUnavailable, message: "the coordinator cannot store \(what) in \(root.path): \(Self.describe(error))")
        }
    }

    /// "No space left on device" rather than Foundation's "The operation could not be completed".
    static func describe(_ error: Error) -> String {
        let ns = error as NSError
        if let posix = (ns.userInfo[NSUnderlyingErrorKey] as? NSError).flatMap({ $0.domain == NSPOSIXErrorDomain ? $0 : nil }) ?? (ns.domain == NSPOSIXErrorDomain ? ns : nil) {
            return String(cString: strerror(Int32(posix.code)))
        }
        return "\(error)"
    }

    /// Verifies the finished part file and moves it to its content address.
    func finalize(upload: Int64, expected: ArtifactInfo) throws {
        let part = partPath(upload: upload)
        let digest = try Self.sha256(of: part)
        guard digest == expected.sha256 else {
            try? FileManager.default.removeItem(at: part)
            throw ErrorReply(code: .badArtifact, message: "\(expected.name): SHA-256 is \(digest), expected \(expected.sha256); upload discarded")
        }
        let dest = path(sha256: digest)
        try storing("\(expected.name)") {
            try placing.withLock {
                try FileManager.default.createDirectory(at: dest.deletingLastPathComponent(), withIntermediateDirectories: true)
                if FileManager.default.fileExists(atPath: dest.path) {
                    try FileManager.default.removeItem(at: part)   // same content already stored
                } else {
                    try FileManager.default.moveItem(at: part, to: dest)
                }
            }
        }
    }

    /// Every stored content: its digest, file and size.
    func storedFiles() -> [(sha256: String, url: URL, size: Int64)] {
        Self.files(in: root.appendingPathComponent("artifacts")).filter { ArtifactRules.isDigest($0.name) }
            .map { ($0.name, $0.url, $0.size) }
    }

    /// Every part file of an upload, by upload id.
    func partFiles() -> [(upload: Int64, url: URL, size: Int64)] {
        Self.files(in: root.appendingPathComponent("uploads")).compactMap { f in
            guard f.name.hasSuffix(".part"), let id = Int64(f.name.dropLast(5)) else { return nil }
            return (id, f.url, f.size)
        }
    }

    /// Removes the content `sha256` if `unreferenced()` still says so, checked under the lock
    /// finished uploads take; returns the bytes freed (nil when it stays).
    func remove(sha256: String, ifUnreferenced unreferenced: () throws -> Bool) throws -> Int64? {
        try placing.withLock {
            let url = path(sha256: sha256)
            guard try unreferenced(), let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.int64Value else { return nil }
            try FileManager.default.removeItem(at: url)
            return size
        }
    }

    private static func files(in dir: URL) -> [(name: String, url: URL, size: Int64)] {
        guard let e = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: [.isRegularFileKey, .fileSizeKey]) else { return [] }
        var out: [(String, URL, Int64)] = []
        for case let url as URL in e {
            guard let v = try? url.resourceValues(forKeys: [.isRegularFileKey, .fileSizeKey]), v.isRegularFile == true else { continue }
            out.append((url.lastPathComponent, url, Int64(v.fileSize ?? 0)))
        }
        return out
    }

    func read(sha256: String, offset: Int64, length: Int) throws -> (Data, Int64) {
        let url = path(sha256: sha256)
        guard let h = try? FileHandle(forReadingFrom: url) else { throw ErrorReply(code: .notFound, message: "artifact \(sha256) is not stored") }
        defer { try? h.close() }
        let size = Int64(try h.seekToEnd())
        guard offset >= 0, offset <= size else { throw ErrorReply(code: .badRequest, message: "offset \(offset) outside 0...\(size)") }
        try h.seek(toOffset: UInt64(offset))
        let data = try h.read(upToCount: max(0, min(length, Int(size - offset)))) ?? Data()
        return (data, size)
    }

    public static func sha256(of url: URL) throws -> String {
        let h = try FileHandle(forReadingFrom: url)
        defer { try? h.close() }
        var hasher = SHA256()
        while let chunk = try h.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        return hasher.finalize().hex
    }
}


