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
