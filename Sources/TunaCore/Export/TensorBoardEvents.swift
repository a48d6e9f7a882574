import Foundation

/// Writes a TensorBoard event file: TFRecord framing (length, masked CRC-32C of the length,
/// the record, masked CRC-32C of the record, little-endian) around `Event` protocol buffers
/// (tensorboard/compat/proto/event.proto: wall_time = 1 double, step = 2 int64, file_version = 3
/// string, summary = 5; Summary.value = 1; Summary.Value tag = 1, simple_value = 2 float).
/// Encoded by hand: five fields do not need a protobuf library.
public enum TensorBoardEvents {
    /// The file's bytes: the version record, then one event per step with every tag's value there.
    public static func file(_ curves: Curves, startMs: Int64) -> Data {
        var out = Data()
        var version = Proto()
        version.double(1, Double(startMs) / 1000)
        version.bytes(3, Data("brain.Event:2".utf8))
        record(version.data, into: &out)
        var steps: [Int: [(tag: String, point: Curves.Point)]] = [:]
        for tag in curves.tags { for p in curves.series[tag]! { steps[p.step, default: []].append((tag, p)) } }
        for step in steps.keys.sorted() {
            let values = steps[step]!
            var summary = Proto()
            for v in values {
                var value = Proto()
                value.bytes(1, Data(v.tag.utf8))
                value.float(2, Float(v.point.value))
                summary.bytes(1, value.data)
            }
            var event = Proto()
            event.double(1, Double(values.map(\.point.atMs).max()!) / 1000)
            event.varint(2, UInt64(max(0, step)))
            event.bytes(5, summary.data)
            record(event.data, into: &out)
        }
        return out
    }

    static func record(_ data: Data, into out: inout Data) {
        var length = Data()
        withUnsafeBytes(of: UInt64(data.count).littleEndian) { length.append(contentsOf: $0) }
        out.append(length)
        withUnsafeBytes(of: CRC32C.masked(length).littleEndian) { out.append(contentsOf: $0) }
        out.append(data)
        withUnsafeBytes(of: CRC32C.masked(data).littleEndian) { out.append(contentsOf: $0) }
    }

    /// The protocol-buffer wire format, the four field kinds an event needs.
    struct Proto {
        var data = Data()
        mutating func raw(_ v: UInt64) {
            var v = v
            while v >= 0x80 { data.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
            data.append(UInt8(v))
        }
        mutating func key(_ field: Int, _ wire: UInt64) { raw(UInt64(field) << 3 | wire) }
        mutating func varint(_ field: Int, _ v: UInt64) { key(field, 0); raw(v) }
        mutating func double(_ field: Int, _ v: Double) { key(field, 1); withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        mutating func float(_ field: Int, _ v: Float) { key(field, 5); withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        mutating func bytes(_ field: Int, _ v: Data) { key(field, 2); raw(UInt64(v.count)); data.append(v) }
    }
}
