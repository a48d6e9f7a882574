import Foundation

/// The unit on the wire: `[u32 big-endian length][u8 kind][payload]`, where length counts
/// the kind byte and the payload. Kind 1 is a JSON message, kind 2 raw bytes (an artifact
/// chunk) that belong to the JSON message just before it. Length-prefixing (not newlines)
/// lets bulk bytes travel without base64 and lets a reader refuse an oversized frame from
/// its first four bytes, before buffering it.
public enum Frame: Sendable, Equatable {
    case json(Data)
    case binary(Data)

    public static let jsonKind: UInt8 = 1
    public static let binaryKind: UInt8 = 2
    /// The largest frame either side accepts (payload plus kind byte).
    public static let defaultMaxLength = 16 << 20
    /// What the coordinator accepts from a connection before its `hello` is accepted: a hello
    /// is a few hundred bytes.
    public static let unauthenticatedMaxLength = 64 << 10
    /// Artifact chunks are this size: large enough for throughput, small enough that a
    /// dropped connection loses little.
    public static let chunkSize = 1 << 20
}

public enum ProtocolVersion {
    /// Bumped on any incompatible change; the hello carries it and a mismatch is refused.
    public static let current = 2

    /// The coordinator's refusal of a peer that speaks another version, naming both sides.
    public static func mismatch(peer: Int, peerRelease: String?) -> String {
        "this coordinator (tuna \(TunaVersion.current)) speaks protocol version \(current), but this "
            + "\(peerRelease.map { "tuna \($0)" } ?? "peer (tuna 0.4 or older)") speaks version \(peer): "
            + "run the same release of tuna on the coordinator, the workers and the CLI"
    }
}
