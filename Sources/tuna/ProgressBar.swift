import Foundation

/// A progress bar on stderr for long CLI work (bytes: `tuna fetch`, `tuna export`'s adapters;
/// jobs: `tuna submit` of a large sweep), redrawn in place (`\r`, clear line) at most ten times a second; nothing when stderr
/// is not a terminal, so scripts and logs see only the command's own output.
struct ProgressBar {
    enum Unit { case bytes, jobs }
    let label: String
    let total: Int64
    let unit: Unit
    let started = Date()
    var lastDraw = Date.distantPast
    let live = isatty(STDERR_FILENO) == 1

    init(_ label: String, total: Int64, unit: Unit = .bytes) { self.label = label; self.total = total; self.unit = unit }

    /// A line without a bar, for a phase whose progress is not known (with the time so far).
    mutating func note(_ text: String) {
        guard live, Date().timeIntervalSince(lastDraw) >= 0.1 else { return }
        lastDraw = Date()
        FileHandle.standardError.write(Data("\r\u{1B}[K\(label)  \(text)  \(Int(Date().timeIntervalSince(started))) s".utf8))
    }

    mutating func update(_ done: Int64) {
        guard live, done >= total || Date().timeIntervalSince(lastDraw) >= 0.1 else { return }
        lastDraw = Date()
        let width = 24
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 1
        let filled = Int(fraction * Double(width))
        let seconds = max(Date().timeIntervalSince(started), 1e-3)
        let amounts: String
        switch unit {
        case .bytes:
            let mib = { (b: Int64) in String(format: "%.1f", Double(b) / 1_048_576) }
            amounts = "\(mib(done))/\(mib(total)) MiB  " + String(format: "%.1f MiB/s", Double(done) / 1_048_576 / seconds)
        case .jobs:
            amounts = "\(done)/\(total) jobs stored  " + String(format: "%.0f jobs/s", Double(done) / seconds)
        }
        let line = "\r\u{1B}[K\(label)  [" + String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled) + "] "
            + String(format: "%3.0f%%", fraction * 100) + "  " + amounts
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// Clears the bar's line (the command then prints its own result).
    func finish() {
        guard live else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}
