import Foundation

/// Tuna's release version: the one place it is written. `scripts/release.sh` names the tarball
/// after what `tuna version --json` prints, and every hello carries it, so a refusal can say
/// which releases disagree.
public enum TunaVersion {
    public static let current = "0.5.0"

    /// How this executable was built: `scripts/release.sh` writes a BUILD file (commit, date,
    /// compiler) to `share/tuna/BUILD` beside `bin/`; a build from source has none.
    public static func build(executable: String) -> String {
        let bin = URL(fileURLWithPath: executable).deletingLastPathComponent()
        let stamp = bin.deletingLastPathComponent().appendingPathComponent("share/tuna/BUILD")
        guard let text = try? String(contentsOf: stamp, encoding: .utf8) else { return "from source" }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
