import Crypto
import Foundation
import TunaCore

/// Moving artifact bytes over a `WireClient`: uploads in verified chunks that resume from the
/// coordinator's last acknowledged offset, downloads checked against their SHA-256.
public enum ArtifactTransfer {
    /// Every regular file under `dir`, as (relative name, url), sorted by name.
    public static func files(in dir: URL) -> [(String, URL)] {
        guard let e = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: [.isRegularFileKey]) else { return [] }
        var out: [(String, URL)] = []
        let base = dir.standardizedFileURL.path
        for case let url as URL in e where (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
            let full = url.standardizedFileURL.path
            guard full.hasPrefix(base + "/") else { continue }
            out.append((String(full.dropFirst(base.count + 1)), url))
        }
        return out.sorted { $0.0 < $1.0 }
    }

    public static func describe(_ url: URL, name: String, kind: String) throws -> ArtifactInfo {
        let h = try FileHandle(forReadingFrom: url)
        defer { try? h.close() }
        var hasher = SHA256()
        var size: Int64 = 0
        while let chunk = try h.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(data: chunk); size += Int64(chunk.count)
        }
        return ArtifactInfo(kind: kind, name: name, sha256: hasher.finalize().hex, size: size)
    }

    /// Uploads one file, starting where the coordinator says it has verified bytes up to.
    /// Call again after a dropped connection: it resumes from the last acknowledged chunk.
    public static func upload(_ c: WireClient, ref: AttemptRef, file: URL, info: ArtifactInfo) async throws {
        let ready = try await c.send(UploadBegin(job: ref.job, attempt: ref.attempt, artifact: info))
        let h = try FileHandle(forReadingFrom: file)
        defer { try? h.close() }
        var offset = ready.offset
        try h.seek(toOffset: UInt64(offset))
        while offset < info.size {
            let bytes = try h.read(upToCount: Frame.chunkSize) ?? Data()
            guard !bytes.isEmpty else { throw TunaError.io("\(file.path) shrank while uploading") }
            let digest = SHA256.hash(data: bytes).hex
            let ack = try await c.send(UploadChunk(upload: ready.upload, offset: offset, length: bytes.count, sha256: digest),
                                          binary: bytes)
            offset = ack.offset
        }
        _ = try await c.send(UploadEnd(upload: ready.upload))
    }

    /// Downloads an artifact to `dest` (via a temporary file), verifying its SHA-256;
    /// `progress` hears the bytes received so far after each chunk.
    public static func download(_ c: WireClient, _ a: ArtifactInfo, to dest: URL, progress: ((Int64) -> Void)? = nil) async throws {
        try FileManager.default.createDirectory(at: dest.deletingLastPathComponent(), withIntermediateDirectories: true)
        let tmp = dest.appendingPathExtension("part")
        FileManager.default.createFile(atPath: tmp.path, contents: nil)
        let h = try FileHandle(forWritingTo: tmp)
        var hasher = SHA256()
        var offset: Int64 = 0
        do {
            while offset < a.size {
                let reply = try await c.sendRaw(ReadArtifact(sha256: a.sha256, offset: offset, length: Frame.chunkSize))
                let chunk = try reply.decode(ArtifactChunk.self)
                guard let bytes = reply.binary, bytes.count == chunk.length, !bytes.isEmpty else {
                    throw TunaError.io("\(a.name): short read at offset \(offset)")
                }
                try h.write(contentsOf: bytes)
                hasher.update(data: bytes)
                offset += Int64(bytes.count)
                progress?(offset)
            }
            try h.close()
        } catch {
            try? h.close()
            try? FileManager.default.removeItem(at: tmp)
            throw error
        }
        let digest = hasher.finalize().hex
        guard digest == a.sha256 else {
            try? FileManager.default.removeItem(at: tmp)
            throw TunaError.io("\(a.name): downloaded SHA-256 \(digest) does not match \(a.sha256)")
        }
        try? FileManager.default.removeItem(at: dest)
        try FileManager.default.moveItem(at: tmp, to: dest)
    }
}
