import Foundation
import Hummingbird
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import TunaCore
import TunaStore

/// What the dashboard reads beyond the store: things only the coordinator knows.
public struct DashboardSources: Sendable {
    public var store: Store
    public var access: DashboardAccess
    public var connectedWorkers: @Sendable () async -> Set<String>
    /// Where an artifact's bytes are (by SHA-256).
    public var artifactPath: @Sendable (String) -> URL
    /// The SQLite file (its size, with the WAL's, is a metric).
    public var databasePath: String
    public var now: @Sendable () async -> Int64

    public init(store: Store, access: DashboardAccess, connectedWorkers: @escaping @Sendable () async -> Set<String>,
                artifactPath: @escaping @Sendable (String) -> URL, databasePath: String, now: @escaping @Sendable () async -> Int64) {
        self.store = store; self.access = access; self.connectedWorkers = connectedWorkers; self.artifactPath = artifactPath
        self.databasePath = databasePath; self.now = now
    }
}

/// The web dashboard and `/metrics` on the coordinator's HTTP port (`tuna coordinator --http`):
/// pages rendered on the server (Pages), the JSON they draw from, live updates as server-sent
/// events, artifact downloads. Read-only: changing anything stays the protocol's (the CLI's).
public final class Dashboard: Sendable {
    let sources: DashboardSources
    let feed: LiveFeed
    let metrics: CoordinatorMetrics
    let sessions = Sessions()
    let pages: Pages
    let listen: HostPort
    let tls: TLSConfiguration?
    let log: Logger
    /// Points per job in a sweep's chart, and jobs in it unless the page asks for more.
    static let maxPointsPerJob = 200, defaultCurves = 100, maxCurves = 2000

    public init(listen: HostPort, tls: TLSConfiguration?, sources: DashboardSources, feed: LiveFeed, metrics: CoordinatorMetrics, log: Logger) throws {
        self.listen = listen; self.tls = tls; self.sources = sources; self.feed = feed; self.metrics = metrics; self.log = log
        var pages = try Pages()
        pages.loggedIn = { [access = sources.access] in !access.open() }
        self.pages = pages
    }

    /// Serves until the task is cancelled; `onListening` gets the bound port (useful with port 0).
    public func run(onListening: @escaping @Sendable (Int) -> Void) async throws {
        let app = Application(
            router: router(),
            server: try tls.map { try .tls(.http1(), tlsConfiguration: $0) } ?? .http1(),
            configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "tuna"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) },
            logger: log)
        // Open event streams end with the coordinator, or a graceful shutdown would wait on them.
        try await withTaskCancellationHandler { try await app.run() } onCancel: { feed.close() }
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: RequireLogin(access: sources.access, sessions: sessions))
        let store = sources.store, pages = self.pages
        router.get("/static/dashboard.js") { _, _ in Self.asset(Assets.script, type: "text/javascript; charset=utf-8") }
        router.get("/static/dashboard.css") { _, _ in Self.asset(Assets.style, type: "text/css; charset=utf-8") }
        // A token only ever travels in a POST body or a header, never in a URL (browser history,
        // proxy logs).
        router.get("/login") { req, _ -> Response in
            Self.html(pages.login(next: Self.sitePath(req.uri.queryParameters["next"].map(String.init)), problem: nil))
        }
        router.get("/logout") { req, _ -> Response in
            if let id = req.cookies[Sessions.cookie]?.value { self.sessions.end(id) }
            var r = Response(status: .seeOther, headers: [.location: "/login"])
            r.setCookie(Cookie(name: Sessions.cookie, value: "", maxAge: 0, path: "/", secure: self.tls != nil, httpOnly: true, sameSite: .strict))
            return r
        }
        router.post("/login") { req, _ -> Response in
            var req = req
            let body = try await req.collectBody(upTo: 16 * 1024)
            let form = Pages.formFields(String(buffer: body))
            return self.login(token: form["token"] ?? "", next: form["next"])
        }
        router.get("/") { _, _ in Self.html(pages.sweeps(try store.sweepOverviews(now: await self.sources.now()))) }
        router.get("/sweeps/:id") { _, ctx in
            let id = try ctx.parameters.require("id", as: SweepID.self)
            guard let o = try store.sweepOverviews(now: await self.sources.now(), only: id).first else { throw HTTPError(.notFound, message: "no sweep \(id)") }
            return Self.html(pages.sweep(o))
        }
        router.get("/jobs/:id") { _, ctx in
            let id = try ctx.parameters.require("id", as: JobID.self)
            let detail = try Self.found { try store.jobDetail(id) }
            let tail = try store.lastEvents(job: id, count: 40)
            return Self.html(pages.job(detail, logTail: tail.map { "\($0.seq) \($0.event.canonicalJSON)" }))
        }
        router.get("/workers") { _, _ in
            Self.html(pages.workers(try store.workers(connected: await self.sources.connectedWorkers()), running: try store.runningJobs()))
        }

        router.get("/api/sweeps") { _, _ in try Self.json(try store.sweepOverviews(now: await self.sources.now())) }
        router.get("/api/sweeps/:id/jobs") { _, ctx in
            let id = try ctx.parameters.require("id", as: SweepID.self)
            return Self.json(bytes: try Self.found { try store.resultsJSON(sweep: id, sort: "objective").json })
        }
        router.get("/api/sweeps/:id/curves") { req, ctx in
            let id = try ctx.parameters.require("id", as: SweepID.self)
            let q = req.uri.queryParameters
            guard let kind = CurveKind(name: q["kind"].map(String.init) ?? "eval") else { throw HTTPError(.badRequest, message: "kind is train or eval") }
            let limit = min(Self.maxCurves, max(1, q["limit"].flatMap { Int(String($0)) } ?? Self.defaultCurves))
            let jobs = try q["jobs"].map { list in
                try list.split(separator: ",").map { s -> JobID in
                    guard let j = JobID(String(s)) else { throw HTTPError(.badRequest, message: "jobs is a comma-separated list of job ids") }
                    return j
                }
            }
            if let jobs, jobs.count > Self.maxCurves { throw HTTPError(.badRequest, message: "at most \(Self.maxCurves) jobs") }
            return Self.json(bytes: try Self.found { try store.curvesJSON(sweep: id, kind: kind, limit: limit, maxPoints: Self.maxPointsPerJob, jobs: jobs) })
        }
        router.get("/api/sweeps/:id/stream") { req, ctx in
            let id = try ctx.parameters.require("id", as: SweepID.self)
            _ = try Self.found { try store.sweepCounts(id) }
            return self.stream(sweep: id)
        }
        router.get("/api/jobs/:id") { _, ctx in
            let id = try ctx.parameters.require("id", as: JobID.self)
            return try Self.json(try Self.found { try store.jobDetail(id) })
        }
        router.get("/api/jobs/:id/events") { _, ctx in
            let id = try ctx.parameters.require("id", as: JobID.self)
            let detail = try Self.found { try store.jobDetail(id) }
            var rows: [EventRow] = []
            for a in detail.attempts { rows += try store.events(job: id, attempt: a.attempt) }
            return try Self.json(rows)
        }
        router.get("/api/workers") { _, _ in try Self.json(try store.workers(connected: await self.sources.connectedWorkers())) }
        router.get("/artifacts/:sha256") { req, ctx in
            let sha = try ctx.parameters.require("sha256")
            guard (try? ArtifactRules.checkDigest(sha)) != nil, try store.hasArtifact(sha256: sha) else { throw HTTPError(.notFound, message: "no artifact \(sha)") }
            // The name a browser saves it under: the artifact's own, when it is a valid one.
            let name = req.uri.queryParameters["name"].map(String.init).flatMap { (try? ArtifactRules.checkName($0)) != nil ? $0 : nil }
            return try Self.file(self.sources.artifactPath(sha), name: (name ?? String(sha.prefix(12))).replacingOccurrences(of: "/", with: "_"))
        }
        router.get("/metrics") { _, _ in
            let text = self.metrics.scrape(try store.gauges(), workersConnected: await self.sources.connectedWorkers().count,
                                           databaseBytes: Self.databaseBytes(self.sources.databasePath))
            return Self.asset(text, type: "text/plain; version=0.0.4; charset=utf-8", cache: false)
        }
        return router
    }

    /// `next` if it is a path on this site, else "/": a login must not send anyone elsewhere
    /// (`//host`, `/\host` and control characters are read by browsers as another site).
    static func sitePath(_ next: String?) -> String {
        guard let next, next.hasPrefix("/"), !next.hasPrefix("//"), !next.contains("\\"),
              !next.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }),
              let c = URLComponents(string: next), c.host == nil, c.scheme == nil else { return "/" }
        return next
    }

    func login(token: String, next: String?) -> Response {
        let target = Self.sitePath(next)
        if let why = sources.access.refusal(token) {
            var r = Self.html(pages.login(next: target, problem: why))
            r.status = .unauthorized
            return r
        }
        var r = Response(status: .seeOther, headers: [.location: target])
        r.setCookie(Cookie(name: Sessions.cookie, value: sessions.start(token: token), maxAge: Int(Sessions.lifetime), path: "/",
                           secure: tls != nil, httpOnly: true, sameSite: .strict))
        return r
    }

    /// A sweep's live updates as server-sent events: `hello` (subscribed), `points` (a job's new curve points as they
    /// are stored), `changed` (its job counts moved: the page fetches its table again), `reload`
    /// (this page fell behind: fetch everything again), and a comment every 15 s so that a gone
    /// browser is noticed. The browser's EventSource reconnects by itself.
    func stream(sweep: SweepID) -> Response {
        let feed = self.feed, store = sources.store
        let body = ResponseBody { writer in
            let (id, updates) = feed.subscribe(sweep: sweep)
            let ticker = Task {
                var ticks = 0, last: [String: Int] = [:]
                while !Task.isCancelled {
                    try await Task.sleep(nanoseconds: 1_000_000_000)
                    ticks += 1
                    if let counts = try? store.sweepCounts(sweep), counts != last { last = counts; feed.tell(id, .changed(counts)) }
                    if ticks % 15 == 0 { feed.tell(id, .ping) }
                }
            }
            defer { ticker.cancel(); feed.cancel(id) }
            // `hello` once subscribed: the page fetches its data after it, so that nothing stored
            // in between is missed.
            try await writer.write(ByteBuffer(string: "retry: 2000\nevent: hello\ndata: {}\n\n"))
            for await item in updates {
                try await writer.write(ByteBuffer(string: item.sse))
                // Dropped updates (this page read too slowly): one `reload`, however many dropped.
                if feed.takeOverflow(id) { try await writer.write(ByteBuffer(string: LiveFeed.Item.overflow.sse)) }
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    // MARK: Responses

    static func html(_ s: String) -> Response {
        Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"], body: .init(byteBuffer: ByteBuffer(string: s)))
    }

    static func asset(_ s: String, type: String, cache: Bool = true) -> Response {
        Response(status: .ok, headers: [.contentType: type, .cacheControl: cache ? "max-age=300" : "no-store"], body: .init(byteBuffer: ByteBuffer(string: s)))
    }

    static func json<T: Encodable>(_ value: T) throws -> Response {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return json(bytes: try e.encode(value))
    }

    static func json(bytes: Data) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// The store's "no such sweep/job" as a 404.
    static func found<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch StoreError.notFound(let m) { throw HTTPError(.notFound, message: m) }
    }

    static func file(_ url: URL, name: String) throws -> Response {
        guard let handle = try? FileHandle(forReadingFrom: url) else { throw HTTPError(.notFound, message: "artifact file missing") }
        let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? nil
        let body = ResponseBody(contentLength: size) { writer in
            defer { try? handle.close() }
            while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                try await writer.write(ByteBuffer(bytes: chunk))
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "application/octet-stream", .contentDisposition: "attachment; filename=\"\(name)\""], body: body)
    }

    static func databaseBytes(_ path: String) -> Int64 {
        [path, path + "-wal"].reduce(Int64(0)) { sum, p in
            sum + ((try? FileManager.default.attributesOfItem(atPath: p)[.size] as? Int64) ?? nil ?? 0)
        }
    }
}

extension LiveFeed.Item {
    /// The item as one server-sent event.
    var sse: String {
        switch self {
        case .update(let u):
            let pts = u.points.map { "[\($0.kind.rawValue),\($0.step),\(Store.shortNumber($0.value))]" }.joined(separator: ",")
            return "event: points\ndata: {\"job\":\(u.job),\"points\":[\(pts)]}\n\n"
        case .changed(let counts):
            let body = counts.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",")
            return "event: changed\ndata: {\(body)}\n\n"
        case .overflow: return "event: reload\ndata: {}\n\n"
        case .ping: return ": ping\n\n"
        }
    }
}
