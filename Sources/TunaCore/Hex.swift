import Foundation

/// Lowercase hex of bytes (SHA-256 digests everywhere): a table lookup, since
/// `String(format:)` per byte costs seconds over a 100,000-job sweep.
extension Sequence where Element == UInt8 {
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in self {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A time in milliseconds since 1970 as `yyyy-MM-dd HH:mm:ss`, in UTC (the CLI's tables and the
/// dashboard's pages).
public func utcTime(_ ms: Int64) -> String {
    let f = DateFormatter()
    f.dateFormat = "yyyy-MM-dd HH:mm:ss"
    f.timeZone = TimeZone(identifier: "UTC")
    return f.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
}
