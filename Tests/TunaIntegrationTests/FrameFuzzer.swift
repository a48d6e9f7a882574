import Foundation
import TunaCore
import TunaRandom
#if canImport(Glibc)
import Glibc
#endif

/// Makes hostile byte streams for the coordinator from a seed: frames of every kind a broken or
/// malicious peer might send, each connection either authenticated (a valid `hello` first, then
/// garbage) or not. Deterministic per seed, so a crash names the stream that caused it.
struct FrameFuzzer {
    var rng: SplitMix64
    let token: String

    init(seed: UInt64, token: String) { rng = SplitMix64(seed: seed); self.token = token }

    mutating func pick<T>(_ xs: [T]) -> T { xs[Int(rng.below(UInt64(xs.count)))] }
    mutating func chance(_ p: Double) -> Bool { rng.nextUnit() < p }
    mutating func int(_ n: Int) -> Int { Int(rng.below(UInt64(max(1, n)))) }

    static func frame(kind: UInt8, _ payload: [UInt8]) -> [UInt8] {
        let n = UInt32(payload.count + 1)
        return [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff), kind] + payload
    }

    /// One connection's bytes: maybe a valid hello, then `count` frames. A fatal frame ends a
    /// connection, so half the connections send only frames that are not fatal (well-typed
    /// requests with hostile values, specs), which reach the store and the scheduler.
    mutating func connection(frames count: Int) -> [UInt8] {
        var out: [UInt8] = []
        if chance(0.7) {
            let role = pick(["client", "worker"])
            out += Self.frame(kind: 1, Array(#"{"id":1,"role":"\#(role)","token":"\#(token)","type":"hello","version":\#(ProtocolVersion.current)}"#.utf8))
            if role == "worker" && chance(0.6) {
                out += Self.frame(kind: 1, Array(#"{"capabilities":{"cpu_cores":1,"gpus":[],"hostname":"f","ram_gb":1,"trainers":["command"]},"id":2,"max_jobs":1,"name":"fuzz","running":[],"type":"register","worker_id":"fuzz-\#(int(1000))"}"#.utf8))
            }
        }
        let deep = chance(0.5)
        for _ in 0..<count { out += deep ? Self.frame(kind: 1, Array((chance(0.85) ? request() : submit()).utf8)) : frame() }
        return out
    }

    mutating func frame() -> [UInt8] {
        switch int(10) {
        case 0: return Self.frame(kind: 2, bytes(int(3000)))                               // a stray binary frame
        case 1: return Self.frame(kind: UInt8(int(256)), bytes(int(100)))                  // any kind byte
        case 2: return [0, 0, 0, 0] + bytes(int(8))                                       // an empty frame
        case 3: return [0xff, 0xff, 0xff, UInt8(int(256))]                                 // a length far over the limit
        case 4: return Self.frame(kind: 1, mutate(Array(message().utf8)))                  // a message with bytes flipped
        case 5: return Self.frame(kind: 1, Array(String(repeating: pick(["[", "{\"a\":"]), count: 1 + int(5000)).utf8))   // deep nesting
        case 6: return Self.frame(kind: 1, Array(submit().utf8))                           // a spec the parser must survive
        case 7, 8: return Self.frame(kind: 1, Array(request().utf8))                       // a well-typed request with hostile values
        default: return Self.frame(kind: 1, Array(message().utf8))                         // a well-formed message with wrong fields
        }
    }

    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }

    mutating func mutate(_ b: [UInt8]) -> [UInt8] {
        var b = b
        for _ in 0..<(1 + int(4)) where !b.isEmpty { b[int(b.count)] = UInt8(truncatingIfNeeded: rng.next()) }
        if chance(0.3) { b = Array(b.prefix(int(b.count))) }
        return b
    }

    /// A JSON object with a real or made-up type and fields of the protocol's names with values
    /// of any JSON type, an `id`, and sometimes a `bin` that announces a binary frame.
    mutating func message() -> String {
        let type = chance(0.9) ? pick(MessageType.allCases).rawValue : pick(["", "x", "hello\u{0}", String(repeating: "t", count: 300)])
        var fields = [#""type":"\#(type)""#, #""id":\#(pick(["1", "-1", "0", "9223372036854775807", "1.5", "\"7\"", "null"]))"#]
        let names = ["job", "attempt", "sweep", "worker", "worker_id", "name", "spec", "leases", "events", "upload", "offset", "length",
                     "sha256", "artifact", "free_gpus", "trainers", "sort", "reason", "returned", "running", "max_jobs", "capabilities", "seq"]
        for _ in 0..<int(6) { fields.append(#""\#(pick(names))":\#(value(depth: 0))"#) }
        if chance(0.1) { fields.append(#""bin":\#(pick(["0", "10", "-5", "100000000"]))"#) }
        return "{" + fields.joined(separator: ",") + "}"
    }

    mutating func value(depth: Int) -> String {
        switch depth > 2 ? int(5) : int(8) {
        case 0: return pick(["0", "-1", "1e400", "3.5", "18446744073709551616", "NaN"])
        case 1: return pick(["true", "false", "null"])
        case 2: return "\"" + pick(["", "../../etc/passwd", "a\\nb", "\\u0000", String(repeating: "z", count: 2000), "ab" + String(int(100))]) + "\""
        case 3: return "\"" + String(repeating: "0", count: 64) + "\""
        case 4: return #"{"job":\#(int(50)),"attempt":\#(int(4))}"#
        case 5: return "[" + (0..<int(4)).map { _ in value(depth: depth + 1) }.joined(separator: ",") + "]"
        default: return "{" + (0..<int(3)).map { _ in #""\#(pick(["a", "job", "index", "name"]))":\#(value(depth: depth + 1))"# }.joined(separator: ",") + "}"
        }
    }

    /// A request whose fields have the right types but values no honest peer sends (unknown or
    /// negative ids, wild offsets, other workers' attempts): these are not fatal, so they reach
    /// the store, the scheduler and the artifact intake.
    mutating func request() -> String {
        let job = pick(["1", "2", "-1", "0", "999999", "9223372036854775807"]), attempt = pick(["1", "2", "0", "-3"])
        let sha = pick([String(repeating: "0", count: 64), String(repeating: "a", count: 64), "zz", ""])
        let ref = #"{"job":\#(job),"attempt":\#(attempt)}"#
        switch int(14) {
        case 0: return #"{"type":"job","id":5,"job":\#(job)}"#
        case 1: return #"{"type":"results","id":5,"sweep":\#(job),"sort":"\#(pick(["id", "tokens_per_s", "x; DROP TABLE jobs", "status"]))"}"#
        case 2: return #"{"type":"logs","id":5,"job":\#(job),"attempt":\#(attempt)}"#
        case 3: return #"{"type":"read_artifact","id":5,"sha256":"\#(sha)","offset":\#(pick(["0", "-1", "99999999999"])),"length":\#(pick(["0", "1048576", "-7"]))}"#
        case 4: return #"{"type":"cancel","id":5,"\#(pick(["sweep", "job"]))":\#(job)}"#
        case 5: return #"{"type":"retry","id":5,"sweep":\#(job)}"#
        case 6: return #"{"type":"unquarantine","id":5,"worker":"\#(pick(["fuzz-1", "../x", "", "steady"]))"}"#
        case 7: return #"{"type":"heartbeat","id":5,"leases":[\#(ref)]}"#
        case 8: return #"{"type":"events","id":5,"job":\#(job),"attempt":\#(attempt),"events":[{"seq":\#(pick(["0", "-1", "5"])),"at_ms":0,"event":{"event":"step","loss":1}}]}"#
        case 9: return #"{"type":"upload_begin","id":5,"job":\#(job),"attempt":\#(attempt),"artifact":{"kind":"\#(pick(["adapter", "evil"]))","name":"\#(pick(["a.bin", "../a", "/etc/x"]))","sha256":"\#(sha)","size":\#(pick(["0", "-1", "10"]))}}"#
        case 10: return #"{"type":"upload_chunk","id":5,"upload":\#(job),"offset":0,"length":3,"sha256":"\#(sha)","bin":3}"#
        case 11: return #"{"type":"\#(pick(["job_done", "job_failed"]))","id":5,"job":\#(job),"attempt":\#(attempt),"reason":"r","returned":\#(pick(["true", "false"]))}"#
        case 12: return #"{"type":"job_request","id":5,"free_gpus":[{"index":0,"name":"G","memory_gb":\#(pick(["80", "-1", "1e300"]))}],"trainers":["command"]}"#
        default: return #"{"type":"\#(pick(["ping", "status", "list_sweeps", "list_workers", "waiting"]))","id":5}"#
        }
    }

    /// A `submit` of YAML stitched from pieces valid and not.
    mutating func submit() -> String {
        let pieces = ["name: f", "trainer: command", "trainer: native", "command: [x]", "lora: {rank: [8, 16]}", "a: &x [1, 2]", "b: *x",
                      "<<: {c: 1}", "? [k]\n: v", "lr: !!float 1e400", "model: m", "dataset: {path: d.csv}", "x: [" , "- - -", "\t:", "i: [1, 2, 3]",
                      "steps: -3", "method: random", "sweep: {count: 100000000}", "priority: 1e30", "max_attempts: 0"]
        let yaml = (0..<(1 + int(8))).map { _ in pick(pieces) }.joined(separator: "\n")
        let escaped = yaml.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\t", with: "\\t")
        return #"{"id":3,"spec":"\#(escaped)","type":"submit"}"#
    }
}

/// Sends `bytes` to 127.0.0.1:`port` on a fresh connection, reads whatever comes back until the
/// coordinator closes it or `timeoutMs` pass, and closes. Returns false if it could not connect.
func blast(port: Int, _ bytes: [UInt8], timeoutMs: Int = 300) -> Bool {
    guard let fd = loopbackSocket(port: port, timeoutMs: timeoutMs) else { return false }
    defer { close(fd) }
    var sent = 0
    while sent < bytes.count {
        let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { break }   // the coordinator closed on us: expected
        sent += n
    }
    var buf = [UInt8](repeating: 0, count: 65536)
    while recv(fd, &buf, buf.count, 0) > 0 {}
    return true
}
