/// `HOST:PORT` as the CLI and daemons take it (`[::1]:7070` for IPv6).
public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) { self.host = host; self.port = port }

    public init(parsing s: String) throws {
        var hostPart: Substring, portPart: Substring
        if s.hasPrefix("["), let close = s.firstIndex(of: "]") {
            hostPart = s[s.index(after: s.startIndex)..<close]
            let rest = s[s.index(after: close)...]
            guard rest.hasPrefix(":") else { throw TunaError.invalid("\(s): expected [HOST]:PORT") }
            portPart = rest.dropFirst()
        } else {
            guard let colon = s.lastIndex(of: ":") else { throw TunaError.invalid("\(s): expected HOST:PORT") }
            hostPart = s[..<colon]; portPart = s[s.index(after: colon)...]
        }
        guard !hostPart.isEmpty, let port = Int(portPart), (0...65535).contains(port) else {
            throw TunaError.invalid("\(s): expected HOST:PORT with a port from 0 to 65535")
        }
        host = String(hostPart); self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Loopback addresses need no token; anything else does.
    public var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}
