import Foundation

/// Errors Tuna reports to people. Every case carries a message that says what was wrong
/// and, where it can, what to do next; `description` is what the CLI prints.
public enum TunaError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Input that breaks the rules (a spec, a frame, a file). The message names the field.
    case invalid(String)
    /// Several problems found at once (a spec is validated whole before it is refused).
    case invalidSpec([String])
    /// The other side said no (wrong token, stale attempt, unknown job).
    case refused(code: String, message: String)
    /// The connection or the file system failed.
    case io(String)

    public var description: String {
        switch self {
        case .invalid(let m): return m
        case .invalidSpec(let ms): return "invalid spec:\n" + ms.map { "  - \($0)" }.joined(separator: "\n")
        case .refused(let code, let m): return "\(m) (\(code))"
        case .io(let m): return m
        }
    }
}
