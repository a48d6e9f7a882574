import Foundation
import TunaCore
import TunaWire

extension WorkerDaemon {
    /// Uploads every file under `directory` as artifacts of `kind`, resuming across reconnects.
    func upload(_ ref: AttemptRef, directory: URL, kind: String) async throws {
        let files = ArtifactTransfer.files(in: directory)
        for (name, _) in files {
            do { try ArtifactRules.checkName(name) } catch let e as ErrorReply { throw TunaError.invalid("\(kind) file \(e.message)") }
        }
        for (name, url) in files {
            let info = try ArtifactTransfer.describe(url, name: name, kind: kind)
            try await withClient { c in try await ArtifactTransfer.upload(c, ref: ref, file: url, info: info) }
        }
    }

    /// Fetches a previous attempt's checkpoint files into the resume directory.
    func download(_ artifacts: [ArtifactInfo], into dir: URL) async throws {
        for a in artifacts {
            let dest = dir.appendingPathComponent(a.name)
            try await withClient { c in try await ArtifactTransfer.download(c, a, to: dest) }
        }
    }
}
