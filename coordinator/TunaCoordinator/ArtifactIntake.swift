import Crypto
import Foundation
import TunaCore
import TunaStore

/// Where uploaded artifacts come in (upload_begin, upload_chunk, upload_end): the checks on
/// names, digests, kinds, sizes, offsets and chunk checksums, then the bytes to the
/// `ArtifactStore` and the bookkeeping to the `Store`. Only the worker holding the attempt's
/// lease may write to its uploads.
struct ArtifactIntake: Sendable {
    let store: Store
    let artifacts: ArtifactStore
    let quota: ArtifactQuota

    func begin(_ b: UploadBegin, worker: String) async throws -> UploadReady {
        try ArtifactRules.checkName(b.artifact.name)
        try ArtifactRules.checkDigest(b.artifact.sha256)
        guard ["adapter", "checkpoint", "output"].contains(b.artifact.kind) else {
            throw ErrorReply(code: .badArtifact, message: "artifact kind must be adapter, checkpoint or output")
        }
        guard b.artifact.size >= 0 else { throw ErrorReply(code: .badArtifact, message: "negative size") }
        let u = try await store.beginUpload(AttemptRef(job: b.job, attempt: b.attempt), worker: worker, artifact: b.artifact, quota: quota)
        let offset = try artifacts.prepare(upload: u.id, received: u.received)
        if offset != u.received { try await store.setUploadReceived(u.id, offset) }
        return UploadReady(upload: u.id, offset: offset)
    }

    func chunk(_ c: UploadChunk, bytes: Data?, worker: String) async throws -> ChunkAck {
        guard let bytes, bytes.count == c.length else {
            throw ErrorReply(code: .badMessage, message: "upload_chunk must be followed by a binary frame of `length` bytes")
        }
        let u = try store.upload(c.upload)
        // Only the worker holding the attempt's lease may write to its uploads.
        try store.checkLive(try store.uploadAttempt(c.upload), worker: worker)
        guard c.offset == u.received else {
            throw ErrorReply(code: .badOffset, message: "upload \(c.upload) expects offset \(u.received), got \(c.offset)")
        }
        guard c.offset + Int64(bytes.count) <= u.artifact.size else {
            throw ErrorReply(code: .badArtifact, message: "chunk runs past the declared size \(u.artifact.size)")
        }
        guard bytes.sha256Hex == c.sha256 else {
            throw ErrorReply(code: .badChecksum, message: "chunk at \(c.offset): SHA-256 mismatch; resend it")
        }
        try artifacts.write(upload: u.id, offset: c.offset, bytes: bytes)
        let received = c.offset + Int64(bytes.count)
        try await store.setUploadReceived(u.id, received)
        return ChunkAck(offset: received)
    }

    func end(_ id: Int64, worker: String, now: Int64) async throws {
        let u = try store.upload(id)
        guard u.received == u.artifact.size else {
            throw ErrorReply(code: .badArtifact, message: "upload \(id) has \(u.received) of \(u.artifact.size) bytes")
        }
        let ref = try store.uploadAttempt(id)
        do { try artifacts.finalize(upload: id, expected: u.artifact) } catch let e as ErrorReply where e.code == .badArtifact {
            // The bytes were wrong (and are gone): the upload starts over. (A full disk keeps them.)
            try? await store.setUploadReceived(id, 0)
            throw e
        }
        try await store.completeUpload(id, ref: ref, worker: worker, now: now)
    }
}

extension Data {
    var sha256Hex: String { Crypto.SHA256.hash(data: self).hex }
}
