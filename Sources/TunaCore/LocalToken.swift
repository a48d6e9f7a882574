import Foundation

/// The token a loopback coordinator makes for its own user when given none: on a shared box,
/// only the user who started the coordinator (and root) can read it, so other local users are
/// refused, while that user's CLI and workers find it without a flag. It lives at
/// `~/.tuna/local-PORT.token` (mode 0600, in a 0700 folder) while the coordinator runs.
public enum LocalToken {
    public static func url(port: Int, home: String? = ProcessInfo.processInfo.environment["HOME"]) -> URL? {
        guard let home, !home.isEmpty else { return nil }
        return URL(fileURLWithPath: home).appendingPathComponent(".tuna/local-\(port).token")
    }

    /// Makes a fresh random token for `port` and writes it, readable by this user only.
    public static func create(port: Int) throws -> (token: String, file: URL) {
        guard let file = url(port: port) else {
            throw TunaError.invalid("HOME is not set, so there is nowhere to keep the local token: pass --token-file or --tokens, or --open-loopback")
        }
        let token = randomSecret()
        let dir = file.deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try? FileManager.default.removeItem(at: file)
            guard FileManager.default.createFile(atPath: file.path, contents: Data(token.utf8), attributes: [.posixPermissions: 0o600]) else {
                throw TunaError.io("cannot create \(file.path)")
            }
        } catch {
            throw TunaError.io("cannot write the local token \(file.path): \(error.localizedDescription); pass --token-file or --tokens, or --open-loopback")
        }
        return (token, file)
    }

    /// The token a loopback coordinator on `port` made for this user, if there is one.
    public static func read(port: Int) -> String? {
        guard let file = url(port: port), let s = try? String(contentsOf: file, encoding: .utf8) else { return nil }
        let t = s.trimmingCharacters(in: .whitespacesAndNewlines)
        return t.isEmpty ? nil : t
    }

    /// 32 bytes from the OS's CSPRNG as 64 hex digits: tokens, and the dashboard's session ids.
    public static func randomSecret() -> String {
        var rng = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }.hex
    }
}
