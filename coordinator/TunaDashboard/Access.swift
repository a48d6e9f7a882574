import Foundation
import Hummingbird
import NIOConcurrencyHelpers
import TunaCore

/// Who may open the dashboard, by the coordinator's own token rules: with no token at all (a
/// coordinator on loopback started with `--open-loopback`) everyone on the box may; otherwise a
/// token of any role but `worker` is needed, given once on the login page (a session cookie
/// follows) or on every request as `Authorization: Bearer TOKEN` (Prometheus, scripts).
public struct DashboardAccess: Sendable {
    /// The name and role (Role's raw value) of a token's holder; nil for a token the coordinator
    /// does not accept.
    public var identify: @Sendable (String) -> (name: String, role: String)?
    /// Whether the coordinator has no token at all (then nobody logs in).
    public var open: @Sendable () -> Bool

    public init(identify: @escaping @Sendable (String) -> (name: String, role: String)?, open: @escaping @Sendable () -> Bool) {
        self.identify = identify; self.open = open
    }

    /// Whether a Host header names this box by a loopback name or address (any port).
    static func isLoopbackHost(_ authority: String?) -> Bool {
        guard var host = authority?.lowercased() else { return false }
        if host.hasPrefix("[") { host = String(host.prefix { $0 != "]" }.dropFirst()) }
        else if let colon = host.lastIndex(of: ":") { host = String(host[..<colon]) }
        return host == "localhost" || host == "::1" || host.hasPrefix("127.") && host.split(separator: ".").count == 4
    }

    /// Why a token may not read the dashboard (nil: it may).
    func refusal(_ token: String) -> String? {
        guard let who = identify(token) else { return "wrong token" }
        return who.role == "worker" ? "a worker token cannot open the dashboard (use a read, submit or admin token)" : nil
    }
}

/// Logged-in browsers: a random session id (the cookie) for each login, kept in memory for 12
/// hours. The cookie is never the token itself, so a leaked cookie dies with the session or a
/// coordinator restart, and the token can be rotated (SIGHUP) without the sessions noticing:
/// each request checks that the session's token is still accepted.
final class Sessions: Sendable {
    static let cookie = "tuna_session"
    static let lifetime: TimeInterval = 12 * 3600
    private let table = NIOLockedValueBox<[String: (token: String, expires: Date)]>([:])

    func start(token: String) -> String {
        let id = LocalToken.randomSecret()
        let now = Date()
        table.withLockedValue { t in
            t = t.filter { $0.value.expires > now }
            t[id] = (token, now.addingTimeInterval(Self.lifetime))
        }
        return id
    }

    func token(of id: String) -> String? {
        table.withLockedValue { t in
            guard let s = t[id] else { return nil }
            guard s.expires > Date() else { t[id] = nil; return nil }
            return s.token
        }
    }

    func end(_ id: String) { table.withLockedValue { $0[id] = nil } }
}

/// Lets a request through when the dashboard is open, its bearer token or its session is good;
/// otherwise sends a page to the login form and answers anything else 401.
struct RequireLogin<Context: RequestContext>: RouterMiddleware {
    let access: DashboardAccess
    let sessions: Sessions

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        if access.open() {
            // With no token, only a page this box's browser asked for by a loopback name: another
            // site's script that re-pointed its own name at 127.0.0.1 (DNS rebinding) is refused.
            guard DashboardAccess.isLoopbackHost(request.head.authority) else {
                throw HTTPError(.forbidden, message: "with no token the dashboard answers only to localhost, 127.0.0.1 or [::1]")
            }
            return try await next(request, context)
        }
        if path == "/login" || path == "/logout" || path.hasPrefix("/static/") { return try await next(request, context) }
        if let auth = request.headers[.authorization] {
            guard auth.hasPrefix("Bearer ") else { throw HTTPError(.unauthorized, message: "Authorization must be `Bearer TOKEN`") }
            if let why = access.refusal(String(auth.dropFirst(7))) { throw HTTPError(why == "wrong token" ? .unauthorized : .forbidden, message: why) }
            return try await next(request, context)
        }
        if let id = request.cookies[Sessions.cookie]?.value, let token = sessions.token(of: id), access.refusal(token) == nil {
            return try await next(request, context)
        }
        if request.method == .get && !path.hasPrefix("/api/") && path != "/metrics" && !path.hasPrefix("/artifacts/") {
            let next = request.uri.description
            return Response(status: .seeOther, headers: [.location: "/login?next=\(Pages.urlEncode(next))"])
        }
        throw HTTPError(.unauthorized, message: "log in at /login or send Authorization: Bearer TOKEN")
    }

}
