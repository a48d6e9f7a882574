/// The machine-readable code of an `error` reply (docs/protocol.md §7). On the wire it is a
/// plain string; here it is a type, and the one place that knows which codes close the
/// connection. An open set, as HTTP's field names are in swift-http-types: a code this release
/// does not know (from a newer peer) still decodes, and `closesConnection` is false for it.
public struct ErrorCode: RawRepresentable, Hashable, Codable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    public init(from decoder: Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }

    // The peer is not speaking the protocol (or may not): the connection is closed after these.
    public static let badFrame = ErrorCode(rawValue: "bad_frame")
    public static let badMessage = ErrorCode(rawValue: "bad_message")
    public static let unknownType = ErrorCode(rawValue: "unknown_type")
    public static let unauthorized = ErrorCode(rawValue: "unauthorized")
    public static let version = ErrorCode(rawValue: "version")
    /// The coordinator holds as many connections as it allows (in all, or from this address).
    public static let tooManyConnections = ErrorCode(rawValue: "too_many_connections")
    // A request that failed; the connection stays usable.
    public static let badRequest = ErrorCode(rawValue: "bad_request")
    /// The token's role may not do this (a `read` token submitting, a `submit` token cancelling
    /// someone else's sweep); the connection stays open for what it may do.
    public static let forbidden = ErrorCode(rawValue: "forbidden")
    public static let invalidSpec = ErrorCode(rawValue: "invalid_spec")
    public static let notFound = ErrorCode(rawValue: "not_found")
    public static let staleAttempt = ErrorCode(rawValue: "stale_attempt")
    public static let badArtifact = ErrorCode(rawValue: "bad_artifact")
    public static let badChecksum = ErrorCode(rawValue: "bad_checksum")
    public static let badOffset = ErrorCode(rawValue: "bad_offset")
    /// The coordinator's own disk cannot take the write (full, an I/O error). Not the sender's
    /// fault: a worker keeps its files and retries, and nothing is counted against its job.
    public static let storageUnavailable = ErrorCode(rawValue: "storage_unavailable")
    /// An artifact, or an attempt's artifacts together, over the coordinator's size limits.
    public static let quotaExceeded = ErrorCode(rawValue: "quota_exceeded")
    public static let `internal` = ErrorCode(rawValue: "internal")

    /// Every code this release sends.
    public static let all: [ErrorCode] = [.badFrame, .badMessage, .unknownType, .unauthorized, .version, .tooManyConnections, .badRequest, .forbidden, .invalidSpec,
                                          .notFound, .staleAttempt, .badArtifact, .badChecksum, .badOffset, .storageUnavailable, .quotaExceeded, .internal]

    /// After an error with this code the coordinator closes the connection.
    public var closesConnection: Bool { Self.closing.contains(self) }
    private static let closing: Set<ErrorCode> = [.badFrame, .badMessage, .unknownType, .unauthorized, .version, .tooManyConnections]
}
