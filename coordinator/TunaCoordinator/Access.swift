import Foundation
import TunaCore

/// Who may do what. Every token names a role and a person (or machine); the coordinator checks
/// each request's message type against the role of the token its connection said `hello` with.
public enum Role: String, CaseIterable, Sendable {
    /// Everything, including other people's sweeps and lifting quarantines.
    case admin
    /// Submit sweeps, cancel and retry one's own, and read everything a `read` token may.
    case submit
    /// Sweeps, results, logs, workers, status, and artifacts.
    case read
    /// What a worker daemon sends (register, leases, events, uploads, reports), and the
    /// checkpoints of the jobs it holds; nothing else.
    case worker

    /// Whether this role may send `type` at all (ownership is checked where it applies:
    /// `Routes.requireOwner`, `Store.workerHolds`).
    public func may(_ type: MessageType) -> Bool {
        switch self {
        case .admin: return true
        case .worker: return type.isWorkerOnly || [.hello, .ping, .readArtifact].contains(type)
        case .read: return Self.reading.contains(type)
        case .submit: return Self.reading.contains(type) || [.submit, .cancel, .retry, .extend].contains(type)
        }
    }

    /// Which connection kind (`hello.role`) a token of this role may open.
    func opens(_ kind: String) -> Bool {
        switch self {
        case .admin: return true
        case .worker: return kind == "worker"
        case .read, .submit: return kind == "client"
        }
    }

    private static let reading: Set<MessageType> = [.hello, .ping, .status, .listSweeps, .results, .job, .logs, .waiting, .listWorkers, .readArtifact]
}

/// The holder of a token: a name for the sweeps they submit and the audit log, and a role.
public struct Principal: Sendable, Equatable {
    public var name: String
    public var role: Role
    public init(name: String, role: Role) { self.name = name; self.role = role }

    /// Whoever connects when the coordinator has no token at all (loopback only).
    static let local = Principal(name: "local", role: .admin)
}

/// The tokens the coordinator accepts. Either one shared token (`--token-file`, an `admin`
/// token named "shared") or a tokens file (`--tokens`), one token per line:
///
///     # ROLE    NAME     TOKEN
///     admin     alice    3b1f...
///     submit    bob      9c2e...
///     read      grafana  51aa...
///     worker    gpu-box  77d0...
///
/// reread on SIGHUP. Tokens are compared in constant time.
public struct TokenTable: Sendable {
    private var entries: [(token: String, principal: Principal)]

    public static let none = TokenTable(entries: [])

    /// The single shared token of `--token-file` (nil: no token at all).
    public static func shared(_ token: String?) -> TokenTable {
        TokenTable(entries: (token ?? "").isEmpty ? [] : [(token!, Principal(name: "shared", role: .admin))])
    }

    /// Parses a tokens file; every problem is named with its line number.
    public static func parse(_ text: String, file: String) throws -> TokenTable {
        var entries: [(String, Principal)] = [], problems: [String] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            if words.isEmpty { continue }
            guard words.count == 3 else { problems.append("line \(n + 1): expected ROLE NAME TOKEN"); continue }
            guard let role = Role(rawValue: words[0]) else {
                problems.append("line \(n + 1): role `\(words[0])` is not one of \(Role.allCases.map(\.rawValue).joined(separator: ", "))"); continue
            }
            if let problem = Register.idProblem(words[1]) { problems.append("line \(n + 1): name \(problem)"); continue }
            guard words[2].count >= 16 else { problems.append("line \(n + 1): the token is shorter than 16 characters"); continue }
            if entries.contains(where: { $0.0 == words[2] }) { problems.append("line \(n + 1): this token is already listed"); continue }
            entries.append((words[2], Principal(name: words[1], role: role)))
        }
        guard problems.isEmpty else { throw TunaError.invalid("\(file): " + problems.joined(separator: "; ")) }
        guard !entries.isEmpty else { throw TunaError.invalid("\(file) lists no token") }
        return TokenTable(entries: entries)
    }

    public static func load(_ url: URL) throws -> TokenTable {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch { throw TunaError.io("cannot read \(url.path): \(error.localizedDescription)") }
        return try parse(text, file: url.path)
    }

    public var isEmpty: Bool { entries.isEmpty }
    public var count: Int { entries.count }

    /// The principal a `hello` with `token` speaks for; nil if the token is wrong or missing.
    func principal(for token: String?) -> Principal? {
        if entries.isEmpty { return .local }
        guard let token else { return nil }
        var found: Principal?
        for e in entries where constantTimeEqual(token, e.token) { found = e.principal }   // no early exit
        return found
    }
}
