import Foundation

/// A plain-text table with columns sized to their contents; numbers right-aligned.
struct Table {
    var headers: [String]
    var rows: [[String]] = []

    init(_ headers: [String]) { self.headers = headers }

    mutating func add(_ row: [String]) { rows.append(row) }

    func render() -> String {
        var widths = headers.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        let numeric = headers.indices.map { i in !rows.isEmpty && rows.allSatisfy { i >= $0.count || Double($0[i]) != nil || $0[i] == "-" } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                let pad = String(repeating: " ", count: max(0, widths[i] - c.count))
                return numeric[i] ? pad + c : c + pad
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }
        var out = [line(headers)]
        out.append(contentsOf: rows.map(line))
        return out.joined(separator: "\n")
    }

    /// RFC 4180 CSV.
    func csv() -> String {
        func cell(_ s: String) -> String {
            s.contains(where: { ",\"\n\r".contains($0) }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
        }
        return ([headers] + rows).map { $0.map(cell).joined(separator: ",") }.joined(separator: "\n")
    }
}

func fmt(_ x: Double?, _ digits: Int = 4) -> String {
    guard let x else { return "-" }
    return String(format: "%.\(digits)f", x)
}
