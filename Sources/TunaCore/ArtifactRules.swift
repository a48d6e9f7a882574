import Foundation

/// What an artifact may be called and how its digest is written; the coordinator enforces
/// these and the worker checks them first, so a bad file name fails the job with a clear
/// reason instead of an upload that can never succeed.
public enum ArtifactRules {
    /// A relative path of plain components: no `..`, no absolute paths, no hidden tricks.
    public static func checkName(_ name: String) throws {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        let ok = !name.isEmpty && name.utf8.count <= 255 && parts.count <= 8 && parts.allSatisfy { p in
            !p.isEmpty && p != "." && p != ".." && p.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
        }
        guard ok else {
            throw ErrorReply(code: .badArtifact, message: "artifact name \(JSONValue.string(name)) is not a relative path of letters, digits, '.', '_', '-' (no '..')")
        }
    }

    public static func isDigest(_ s: String) -> Bool { s.count == 64 && s.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) }

    public static func checkDigest(_ s: String) throws {
        guard isDigest(s) else {
            throw ErrorReply(code: .badArtifact, message: "\(JSONValue.string(s)) is not a lowercase hex SHA-256")
        }
    }
}
