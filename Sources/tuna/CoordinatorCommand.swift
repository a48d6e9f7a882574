import ArgumentParser
import Foundation
import Logging
import TunaCore
import TunaCoordinator
import TunaStore
import TunaWire

struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "coordinator",
        abstract: "Run the coordinator: stores sweeps in SQLite and hands jobs to workers.")

    @Option(help: "Address to listen on, HOST:PORT (port 0 picks a free one).")
    var listen = "127.0.0.1:7070"

    @Option(help: "Directory for the database and artifacts.")
    var dataDir = "tuna-data"

    @Option(help: "File holding one shared token that workers and clients must present (an admin token; off loopback this or --tokens is required).")
    var tokenFile: String?

    @Option(help: "The coordinator's TLS certificate chain (PEM): serve TLS.") var tlsCert: String?
    @Option(help: "The key of --tls-cert (PEM).") var tlsKey: String?
    @Option(help: "Require client certificates signed by this CA (PEM).") var tlsClientCA: String?
    @Flag(help: "Off loopback, serve plaintext (no TLS): only on a network you trust.") var insecurePlaintext = false

    @Flag(help: "On loopback with no token, let every local user in (by default a token is made for this user in ~/.tuna).")
    var openLoopback = false

    @Option(help: "File of tokens with roles, one per line: ROLE NAME TOKEN (roles: admin, submit, read, worker); reread on SIGHUP.")
    var tokens: String?

    @Option(help: "Lease length in milliseconds: a worker silent this long loses its jobs.")
    var leaseMs: Int64 = 30_000

    @Option(help: "Base retry backoff in milliseconds (doubles per failure, capped at 5 minutes).")
    var backoffMs: Int64 = 2_000

    @Option(help: "Consecutive failed attempts after which a worker is quarantined.")
    var quarantineAfter = 3

    @Option(help: "SQLite synchronous mode: full (survives power loss) or normal (survives kill -9).")
    var sync = "full"

    @Option(help: "Connections held at once (lowered to fit the file-descriptor limit); more are refused with a reply.")
    var maxConnections = ConnectionLimits().maxConnections

    @Option(help: "Connections held at once from one address.")
    var maxConnectionsPerAddress = ConnectionLimits().maxPerPeer

    @Option(help: "Milliseconds of silence after which a worker's connection is taken for dead (default: half the lease, at most 6000; workers ping four times as often).")
    var silenceMs: Int64?

    @Option(help: "The largest artifact a worker may upload, in GiB (a larger one fails its job's upload with quota_exceeded).")
    var maxArtifactGb: Double = Double(ArtifactQuota().maxArtifactBytes) / Double(1 << 30)

    @Option(help: "The most one attempt's artifacts may weigh together, in GiB.")
    var maxAttemptGb: Double = Double(ArtifactQuota().maxAttemptBytes) / Double(1 << 30)

    @Option(help: "Write the bound port to this file once listening (for scripts using port 0).")
    var portFile: String?

    @Option(help: "Serve the web dashboard and Prometheus /metrics on HOST:PORT (off unless given; port 0 picks a free one). Off loopback: tokens and TLS as for --listen.")
    var http: String?

    @Option(help: "Write the dashboard's bound port to this file once listening.")
    var httpPortFile: String?

    func validate() throws {
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
        if tlsClientCA != nil && tlsCert == nil { throw ValidationError("--tls-client-ca needs --tls-cert and --tls-key") }
        if insecurePlaintext && tlsCert != nil { throw ValidationError("--insecure-plaintext and --tls-cert contradict each other") }
        if let http { do { _ = try HostPort(parsing: http) } catch { throw ValidationError("--http: \(error)") } }
        if httpPortFile != nil && http == nil { throw ValidationError("--http-port-file needs --http") }
        guard maxArtifactGb > 0, maxAttemptGb >= maxArtifactGb else { throw ValidationError("--max-artifact-gb must be > 0 and at most --max-attempt-gb") }
        guard maxConnections >= 1, maxConnectionsPerAddress >= 1 else { throw ValidationError("--max-connections and --max-connections-per-address must be at least 1") }
        guard leaseMs >= 200 else { throw ValidationError("--lease-ms must be at least 200") }
        guard let silenceMs else { return }
        guard silenceMs >= 100 else { throw ValidationError("--silence-ms must be at least 100") }
        guard silenceMs < leaseMs else { throw ValidationError("--silence-ms must be shorter than --lease-ms (a silent worker is dropped before its leases run out)") }
    }

    func run() async throws {
        var config = CoordinatorConfig(listen: try HostPort(parsing: listen), dataDir: URL(fileURLWithPath: dataDir), token: try readToken(file: tokenFile))
        config.tokensFile = tokens.map { URL(fileURLWithPath: $0) }
        config.localToken = !openLoopback
        if let tlsCert, let tlsKey { config.tls = TLS.Server(certificate: tlsCert, key: tlsKey, clientCA: tlsClientCA) }
        config.insecurePlaintext = insecurePlaintext
        config.policy.leaseMs = leaseMs
        config.policy.backoffBaseMs = backoffMs
        config.policy.quarantineAfter = quarantineAfter
        config.quota.maxArtifactBytes = Int64(maxArtifactGb * Double(1 << 30))
        config.quota.maxAttemptBytes = Int64(maxAttemptGb * Double(1 << 30))
        config.connections.maxConnections = maxConnections
        config.connections.maxPerPeer = maxConnectionsPerAddress
        config.connections.silenceMs = silenceMs
        config.http = try http.map { try HostPort(parsing: $0) }
        guard let s = Store.Sync(rawValue: sync.uppercased()) else { throw ValidationError("--sync must be full or normal") }
        config.sync = s
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let server = try CoordinatorServer(config: config)
        let portFile = self.portFile, httpPortFile = self.httpPortFile
        // SIGHUP rereads the tokens file (the handler type is the one the termination signals use).
        let reload = TerminationSignals([SIGHUP]) { server.reloadTokens() }
        defer { reload.cancel() }
        try await runUntilSignal {
            try await server.run(onListening: { port in
                if let portFile { try? "\(port)\n".write(toFile: portFile, atomically: true, encoding: .utf8) }
            }, onHTTPListening: { port in
                if let httpPortFile { try? "\(port)\n".write(toFile: httpPortFile, atomically: true, encoding: .utf8) }
            })
        }
    }
}

/// Runs `body` until SIGINT or SIGTERM cancels it.
func runUntilSignal(_ body: @escaping @Sendable () async throws -> Void) async throws {
    let task = Task { try await body() }
    let signals = TerminationSignals { task.cancel() }
    defer { signals.cancel() }
    do { try await task.value } catch is CancellationError {}
}
