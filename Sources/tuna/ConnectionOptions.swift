import ArgumentParser
import Foundation
import TunaCore
import TunaWire

/// Where the coordinator is and how to prove we may talk to it; shared by every client command.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "Coordinator address HOST:PORT (default: $TUNA_COORDINATOR or 127.0.0.1:7070).")
    var coordinator: String?

    @Option(name: .long, help: "File holding the token (default: $TUNA_TOKEN_FILE, else the token in $TUNA_TOKEN, else on loopback the one the coordinator made for this user).")
    var tokenFile: String?

    @OptionGroup var tls: ClientTLSOptions

    var address: HostPort {
        get throws {
            let s = coordinator ?? ProcessInfo.processInfo.environment["TUNA_COORDINATOR"] ?? "127.0.0.1:7070"
            do { return try HostPort(parsing: s) } catch { throw ValidationError("--coordinator: \(error)") }
        }
    }

    func connect() async throws -> WireClient {
        let address = try address
        return try await WireClient.connect(address, token: try readToken(file: tokenFile, coordinator: address), role: "client", tls: try tls.context())
    }
}

/// The token from a file (trimmed: --token-file, else $TUNA_TOKEN_FILE) or $TUNA_TOKEN; for a
/// loopback coordinator given none, the one it made for this user (`LocalToken`).
func readToken(file: String?, coordinator: HostPort? = nil) throws -> String? {
    let env = ProcessInfo.processInfo.environment
    if file == nil, env["TUNA_TOKEN_FILE"] ?? "" == "", env["TUNA_TOKEN"] ?? "" == "", let c = coordinator, c.isLoopback {
        return LocalToken.read(port: c.port)
    }
    if let file = file ?? env["TUNA_TOKEN_FILE"].flatMap({ $0.isEmpty ? nil : $0 }) {
        guard let s = try? String(contentsOfFile: file, encoding: .utf8) else { throw Failure("cannot read the token file \(file)") }
        let t = s.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !t.isEmpty else { throw Failure("the token file \(file) is empty") }
        return t
    }
    return env["TUNA_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
}

/// Prints a Codable value as one line of JSON (for streams of updates: `tuna watch --json`).
func printJSONLine<T: Encodable>(_ value: T) {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    // Written at once (not through print's buffer): a reader of the stream sees each update as it comes.
    if let d = try? e.encode(value) { FileHandle.standardOutput.write(d + Data("\n".utf8)) }
}

/// Prints a Codable value as JSON (for `--json`).
func printJSON<T: Encodable>(_ value: T) {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    if let d = try? e.encode(value) { print(String(decoding: d, as: UTF8.self)) }
}
