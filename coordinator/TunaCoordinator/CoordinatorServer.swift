import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import TunaCore
import TunaDashboard
import TunaStore
import TunaWire

public struct CoordinatorConfig: Sendable {
    public var listen: HostPort
    public var dataDir: URL
    /// One shared token (an `admin` token named "shared"), from `--token-file`.
    public var token: String?
    /// A tokens file with roles and names (`--tokens`, see `TokenTable`), reread on SIGHUP.
    public var tokensFile: URL?
    /// With neither, on loopback: make a token for this user (`LocalToken`) rather than let
    /// every local user in. `tuna coordinator` sets it unless `--open-loopback`.
    public var localToken = false
    /// TLS (`--tls-cert`, `--tls-key`, `--tls-client-ca`). Off loopback the coordinator serves
    /// TLS, or plaintext only when `insecurePlaintext` says so (`--insecure-plaintext`).
    public var tls: TLS.Server?
    public var insecurePlaintext = false
    public var policy = LeasePolicy()
    public var sync: Store.Sync = .full
    public var maxFrame = Frame.defaultMaxLength
    /// The largest frame before `hello` is accepted.
    public var unauthenticatedMaxFrame = Frame.unauthenticatedMaxLength
    public var connections = ConnectionLimits()
    public var quota = ArtifactQuota()
    public var reapIntervalMs: Int64?
    /// The dashboard and /metrics (`--http HOST:PORT`): off unless given. The same rules as the
    /// protocol's port: off loopback it needs tokens and TLS (the protocol's certificate), or
    /// `--insecure-plaintext`.
    public var http: HostPort?

    public init(listen: HostPort, dataDir: URL, token: String?) {
        self.listen = listen; self.dataDir = dataDir; self.token = token
    }
}

/// The coordinator process: the TCP listener, one task per connection, and the reaper.
public final class CoordinatorServer: Sendable {
    public let config: CoordinatorConfig
    let coordinator: Coordinator
    let store: Store
    let artifacts: ArtifactStore
    let intake: ArtifactIntake
    let counter: ConnectionCounter
    let storage: StorageHealth
    let tokens: NIOLockedValueBox<TokenTable>
    /// Whether `finishStoringSweeps` is running (the reaper starts it at most once at a time).
    let finishing = NIOLockedValueBox(false)
    let tlsContext: NIOSSLContext?
    let startedMs = Int64(Date().timeIntervalSince1970 * 1000)
    let log: Logger
    /// `/metrics`' counters (kept whether or not the HTTP port is on) and the dashboard's live feed.
    public let metrics = CoordinatorMetrics()
    let feed = LiveFeed()

    public init(config: CoordinatorConfig, log: Logger = Logger(label: "tuna.coordinator")) throws {
        if config.tokensFile != nil && !(config.token ?? "").isEmpty {
            throw TunaError.invalid("give either --token-file (one shared token) or --tokens (tokens with roles), not both")
        }
        let table = try config.tokensFile.map(TokenTable.load) ?? .shared(config.token)
        if !config.listen.isLoopback && table.isEmpty {
            throw TunaError.invalid("a token is required when listening on \(config.listen.host) (not loopback): pass --tokens or --token-file")
        }
        tokens = NIOLockedValueBox(table)
        if !config.listen.isLoopback && config.tls == nil && !config.insecurePlaintext {
            throw TunaError.invalid("off loopback the coordinator serves TLS: pass --tls-cert and --tls-key (or, on a network you trust, --insecure-plaintext)")
        }
        if let http = config.http, !http.isLoopback {
            if table.isEmpty { throw TunaError.invalid("a token is required for the dashboard on \(http.host) (not loopback): pass --tokens or --token-file") }
            if config.tls == nil && !config.insecurePlaintext {
                throw TunaError.invalid("off loopback the dashboard serves HTTPS with the coordinator's certificate: pass --tls-cert and --tls-key (or, on a network you trust, --insecure-plaintext)")
            }
        }
        tlsContext = try config.tls?.context()
        self.config = config
        self.log = log
        try FileManager.default.createDirectory(at: config.dataDir, withIntermediateDirectories: true)
        store = try Store(path: config.dataDir.appendingPathComponent("tuna.sqlite").path, sync: config.sync)
        artifacts = try ArtifactStore(dataDir: config.dataDir)
        intake = ArtifactIntake(store: store, artifacts: artifacts, quota: config.quota)
        coordinator = Coordinator(store: store, policy: config.policy, connections: config.connections, log: log, metrics: metrics)
        storage = StorageHealth(dataDir: config.dataDir, log: log)
        counter = ConnectionCounter(maxTotal: config.connections.effectiveMax, maxPerPeer: config.connections.maxPerPeer)
    }

    /// Binds, then calls `onListening` with the bound port (useful with port 0), then serves
    /// until the task is cancelled. With `config.http`, the dashboard too: `onHTTPListening` gets
    /// its bound port.
    public func run(onListening: @Sendable (Int) -> Void = { _ in }, onHTTPListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        try await store.extendRunningLeases(now: await coordinator.now, policy: config.policy)
        let server = try await Channels.listen(config.listen, initialMaxFrame: config.unauthenticatedMaxFrame, tls: tlsContext)
        let port = server.channel.localAddress?.port ?? config.listen.port
        log.info("listening on \(config.listen.host):\(port), data in \(config.dataDir.path); at most \(counter.maxTotal) connections, \(counter.maxPerPeer) per address")
        if counter.maxTotal < config.connections.maxConnections {
            log.warning("the file-descriptor limit allows only \(counter.maxTotal) connections (asked for \(config.connections.maxConnections)): raise it with `ulimit -n` or LimitNOFILE=")
        }
        var localTokenFile: URL?
        if config.localToken && tokens.withLockedValue({ $0.isEmpty }) {
            let (token, file) = try LocalToken.create(port: port)
            tokens.withLockedValue { $0 = .shared(token) }
            localTokenFile = file
            log.info("no token given: made one for this user in \(file.path) (the CLI and workers of this user on this box read it)")
        }
        defer { if let localTokenFile { try? FileManager.default.removeItem(at: localTokenFile) } }
        onListening(port)
        let interval = config.reapIntervalMs ?? max(50, min(1000, config.policy.leaseMs / 4))
        let dashboard = try config.http.map { try makeDashboard($0) }
        let localTokenPath = localTokenFile?.path
        try await withThrowingDiscardingTaskGroup { group in
            if let dashboard {
                group.addTask {
                    try await dashboard.run { port in
                        let url = "\(self.config.tls == nil ? "http" : "https")://\(HostPort(host: self.config.http!.host, port: port))"
                        // The token itself never goes to the log (a log may be readable by others).
                        let login = localTokenPath.map { " (log in with the token in \($0))" } ?? ""
                        self.log.info("dashboard on \(url)/\(login)")
                        onHTTPListening(port)
                    }
                }
            }
            group.addTask { [coordinator] in
                while !Task.isCancelled {
                    try await Task.sleep(nanoseconds: UInt64(interval) * 1_000_000)
                    if await self.storageWritable() {
                        await coordinator.reap()
                        // Sweeps a stopped coordinator or a full disk left half stored.
                        if (try? self.store.hasExpandingSweeps()) == true { self.finishStoringSweepsInBackground() }
                    }
                }
            }
            try await server.executeThenClose { inbound in
                var next = 0
                for try await accepted in inbound {
                    next += 1
                    let id = next
                    group.addTask { await self.serve(accepted, id: id) }
                }
            }
        }
    }

    /// One connection: read messages in order and answer each. Protocol errors (a bad frame,
    /// an unknown message, a wrong token) get an error reply and close this connection only.
    /// A connection over the caps is refused with a reply. Until its `hello` is accepted a
    /// connection may send only small frames, and it is closed if that has not happened within
    /// the hello deadline: an unauthenticated peer can hold neither memory nor a connection for
    /// long. A silent peer is disconnected (see `watchSilence`).
    func serve(_ accepted: Channels.Accepted, id: Int) async {
        let conn = accepted.conn, channel = conn.channel
        let peer = channel.remoteAddress?.ipAddress ?? "?"
        if let refusal = counter.admit(peer) {
            if let n = counter.refusalToLog() { log.warning("refused \(n) connection(s): \(refusal)") }
            try? await conn.executeThenClose { _, outbound in
                try await outbound.write(.json(Envelope.encode(MessageType.error.rawValue, ErrorReply(code: .tooManyConnections, message: refusal))))
            }
            return
        }
        defer { counter.release(peer) }
        try? await conn.executeThenClose { inbound, outbound in
            let session = Session(id: id, outbound: outbound, channel: channel, frameLimit: accepted.limit,
                                  authenticatedMaxFrame: self.config.maxFrame)
            let watch = self.watchSilence(of: session, on: channel)
            defer { watch.cancel() }
            var assembler = MessageAssembler()
            do {
                for try await frame in inbound {
                    session.handling(true)
                    defer { session.handling(false) }
                    guard let msg = try assembler.feed(frame) else { continue }
                    do {
                        try await self.route(msg, session)
                    } catch let e as ErrorReply {
                        if e.code == .storageUnavailable { self.storage.failed(e.message, nowMs: await self.coordinator.now) }
                        await session.send(.error, re: msg.header.id, e)
                        if e.code.closesConnection { break }
                    } catch let e as StoreError {
                        if case .storage(let m) = e { self.storage.failed(m, nowMs: await self.coordinator.now) }
                        await session.send(.error, re: msg.header.id, ErrorReply(e))
                    } catch {
                        // A file-system or other unexpected failure: say so, keep the connection.
                        self.log.error("\(msg.type): \(error)")
                        await session.send(.error, re: msg.header.id, ErrorReply(code: .internal, message: "\(msg.type) failed: \(error)"))
                    }
                }
            } catch let e as ErrorReply {
                await session.send(.error, e)
            } catch let e as WireError {
                await session.send(.error, ErrorReply(code: .badFrame, message: e.description))
            } catch {
                // The peer went away (reset, EOF mid-frame): nothing to tell it.
            }
            await self.coordinator.disconnected(session)
        }
    }
}

extension CoordinatorServer {
    /// The dashboard on `http`, reading this coordinator's store, tokens and connections.
    func makeDashboard(_ http: HostPort) throws -> Dashboard {
        let tokens = self.tokens, coordinator = self.coordinator, artifacts = self.artifacts
        let access = DashboardAccess(
            identify: { token in tokens.withLockedValue { $0.principal(for: token) }.map { ($0.name, $0.role.rawValue) } },
            open: { tokens.withLockedValue { $0.isEmpty } })
        let sources = DashboardSources(store: store, access: access, connectedWorkers: { await coordinator.connectedWorkers },
                                       artifactPath: { artifacts.path(sha256: $0) },
                                       databasePath: config.dataDir.appendingPathComponent("tuna.sqlite").path, now: { await coordinator.now })
        // HTTPS with the protocol's certificate, but no client certificates: a browser or
        // Prometheus logs in with a token (`--tls-client-ca` is for workers and the CLI).
        let tls = try config.tls.map { try TLS.Server(certificate: $0.certificate, key: $0.key).configuration() }
        return try Dashboard(listen: http, tls: tls, sources: sources, feed: feed, metrics: metrics, log: log)
    }

    /// Rereads the tokens file (SIGHUP). A file with a problem is refused and the tokens in use
    /// stay as they were; connections already open keep the role they said hello with.
    public func reloadTokens() {
        guard let file = config.tokensFile else { return log.warning("SIGHUP: no --tokens file to reread") }
        do {
            let table = try TokenTable.load(file)
            tokens.withLockedValue { $0 = table }
            log.notice("SIGHUP: reread \(file.path): \(table.count) tokens")
        } catch {
            log.error("SIGHUP: \(error); keeping the \(tokens.withLockedValue { $0.count }) tokens in use")
        }
    }

    /// Stores the rest of the sweeps whose submit was interrupted (a restart, a full disk), in
    /// a task of its own so that the reaper goes on meanwhile. A sweep a submit is still storing
    /// is left to it (`Store.resumeExpansion` skips the sweeps being stored).
    func finishStoringSweepsInBackground() {
        guard finishing.withLockedValue({ busy in defer { busy = true }; return !busy }) else { return }
        Task {
            defer { finishing.withLockedValue { $0 = false } }
            do {
                for sweep in try await store.resumeExpansion(now: await coordinator.now) {
                    log.info("sweep \(sweep): finished storing the jobs of an interrupted submit")
                    await coordinator.dispatch()
                }
            } catch StoreError.storage(let why) {
                // Full again: the storage health check says so and this is retried once there is room.
                storage.failed(why, nowMs: await coordinator.now)
            } catch { log.error("could not finish storing an interrupted sweep: \(error)") }
        }
    }

    /// Whether leases may be expired now. While the disk refused writes, heartbeats could not
    /// renew leases, so none expires then; once a write works again (extending every running
    /// lease is that write) the outage is over, and no attempt is lost for it.
    func storageWritable() async -> Bool {
        guard storage.problem != nil else { return true }
        // Room for a couple of upload chunks, or the next one would be refused at once.
        if let free = storage.freeBytes, free < 2 * Int64(Frame.chunkSize) { return false }
        let now = await coordinator.now
        do {
            try await store.extendRunningLeases(now: now, policy: config.policy)
            storage.recovered(nowMs: now)
            return true
        } catch { return false }
    }

    /// Closes the connection when its peer has been silent too long for what it is: before
    /// `hello`, the hello deadline; a worker, its silence (it pings four times as often); a client,
    /// `clientIdleSeconds`. Checked on the connection's event loop every 250 ms.
    func watchSilence(of session: Session, on channel: Channel) -> RepeatedTask {
        let limits = config.connections, log = self.log, silenceMs = config.connections.silence(leaseMs: config.policy.leaseMs)
        return channel.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(250), delay: .milliseconds(250)) { task in
            guard let silent = session.silence(now: .now()) else { return }
            let (limit, who): (TimeAmount, String)
            switch session.role {
            case nil: (limit, who) = (.seconds(limits.helloDeadlineSeconds), "a connection that never said hello")
            case "worker"?: (limit, who) = (.milliseconds(silenceMs), "worker \(session.workerID ?? "(unregistered)")")
            default: (limit, who) = (.seconds(limits.clientIdleSeconds), "an idle client")
            }
            guard silent > limit else { return }
            if session.role != nil { log.warning("\(who) silent for \(silent.nanoseconds / 1_000_000) ms: closing its connection") }
            task.cancel()
            channel.close(promise: nil)
        }
    }
}

extension ErrorReply {
    /// The store's refusals as the wire says them: the one place they are mapped.
    init(_ e: StoreError) {
        switch e {
        case .notFound(let m): self.init(code: .notFound, message: m)
        case .staleAttempt: self.init(code: .staleAttempt, message: e.description)
        case .badRequest(let m): self.init(code: .badRequest, message: m)
        case .storage(let m): self.init(code: .storageUnavailable, message: m)
        case .quota(let m): self.init(code: .quotaExceeded, message: m)
        case .database(let m): self.init(code: .internal, message: m)
        }
    }
}
