import Foundation

/// Process memory figures from /proc/self/status (Linux), for the lazy-dequantization claims.
public enum Memory {
    /// Peak resident set size (VmHWM) in bytes, or nil where /proc is unavailable.
    public static func peakRSS() -> Int? { statusField("VmHWM:") }

    /// Current resident set size (VmRSS) in bytes.
    public static func currentRSS() -> Int? { statusField("VmRSS:") }

    /// Resets VmHWM to the current RSS (Linux >= 4.0: write "5" to /proc/self/clear_refs), so a
    /// benchmark can measure the peak of one phase. Returns false if the kernel refused.
    @discardableResult
    public static func resetPeakRSS() -> Bool {
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? handle.close() }
        do { try handle.write(contentsOf: Data("5".utf8)) } catch { return false }
        return true
    }

    private static func statusField(_ key: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(key) {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
        }
        return nil
    }
}
