import Foundation
import XCTest
@testable import TunaCore

final class ProtocolTests: XCTestCase {
    func testEnvelopeIsFlatJSONWithTypeAndID() throws {
        let data = Envelope.encode("heartbeat", id: 7, Heartbeat(leases: [AttemptRef(job: 3, attempt: 2)]))
        XCTAssertEqual(String(decoding: data, as: UTF8.self), #"{"id":7,"leases":[{"attempt":2,"job":3}],"type":"heartbeat"}"#)
        let h = try Envelope.header(data)
        XCTAssertEqual(h.type, "heartbeat"); XCTAssertEqual(h.id, 7); XCTAssertNil(h.re)
        XCTAssertEqual(try Envelope.decode(Heartbeat.self, from: data, message: "heartbeat").leases, [AttemptRef(job: 3, attempt: 2)])
    }

    func testMalformedPayloadNamesTheField() {
        XCTAssertThrowsError(try Envelope.decode(JobDone.self, from: Data(#"{"type":"job_done","job":1}"#.utf8), message: "job_done")) { e in
            XCTAssertEqual((e as? ErrorReply)?.code, .badMessage)
            XCTAssert((e as? ErrorReply)?.message.contains("attempt") == true, "\(e)")
        }
        XCTAssertThrowsError(try Envelope.header(Data("not json".utf8))) { XCTAssertEqual(($0 as? ErrorReply)?.code, .badMessage) }
        XCTAssertThrowsError(try Envelope.header(Data("[1,2]".utf8)))
    }

    /// A frame nested past Foundation's own limit made its JSON scanner trap (a fuzzed frame,
    /// seed 1796337481): such frames are refused before any decoder sees them.
    func testDeeplyNestedFramesAreRefusedNotFatal() {
        let framed = Data("xx".utf8) + Data(String(repeating: "[", count: 511).utf8) + Data(#"{"type":"ping"}"#.utf8)
        let frame = framed[framed.startIndex + 2 ..< framed.endIndex]   // a slice, as frames are
        XCTAssertThrowsError(try Envelope.header(frame)) { e in
            XCTAssertEqual((e as? ErrorReply)?.message, "a frame may nest arrays and objects at most 100 deep")
        }
        let deepString = Data((#"{"type":"ping","x":""# + String(repeating: "[", count: 600) + #""}"#).utf8)
        XCTAssertEqual(try Envelope.header(deepString).type, "ping", "brackets inside a string do not count")
        XCTAssertFalse(JSONValue.nestsTooDeep(Data((String(repeating: "[", count: 100) + String(repeating: "]", count: 100)).utf8)))
        // 511 `[` is what made Foundation's scanner trap: refused with a message instead.
        XCTAssertThrowsError(try JSONValue.parse(String(repeating: "[", count: 511)))
    }

    func testLifecycle() {
        XCTAssertEqual(JobLifecycle.next(.queued, .leased), .running)
        XCTAssertEqual(JobLifecycle.next(.running, .failed(failures: 1, maxAttempts: 3)), .queued)
        XCTAssertEqual(JobLifecycle.next(.running, .failed(failures: 3, maxAttempts: 3)), .failed)
        XCTAssertEqual(JobLifecycle.next(.running, .returned), .queued)
        XCTAssertEqual(JobLifecycle.next(.running, .succeeded), .succeeded)
        XCTAssertNil(JobLifecycle.next(.succeeded, .succeeded), "a second result is refused")
        XCTAssertNil(JobLifecycle.next(.cancelled, .succeeded), "a late result after cancel is refused")
        XCTAssertNil(JobLifecycle.next(.succeeded, .cancelled))
        XCTAssertEqual(JobLifecycle.next(.failed, .retried), .queued)
        XCTAssertNil(JobLifecycle.next(.succeeded, .retried))
        XCTAssertEqual(JobLifecycle.backoffMs(failures: 1, baseMs: 1000, capMs: 60_000), 1000)
        XCTAssertEqual(JobLifecycle.backoffMs(failures: 3, baseMs: 1000, capMs: 60_000), 4000)
        XCTAssertEqual(JobLifecycle.backoffMs(failures: 30, baseMs: 1000, capMs: 60_000), 60_000)
        // The bulk changes the store makes in one statement are the same rules, read off `next`.
        XCTAssertEqual(JobLifecycle.bulk(.cancelled).from, [.queued, .running, .paused])
        XCTAssertEqual(JobLifecycle.next(.running, .paused), .paused)
        XCTAssertEqual(JobLifecycle.next(.paused, .promoted), .queued)
        XCTAssertEqual(JobLifecycle.next(.paused, .stopped), .stopped)
        XCTAssertNil(JobLifecycle.next(.paused, .succeeded), "a paused attempt's late result is refused")
        XCTAssertNil(JobLifecycle.next(.queued, .promoted))
        XCTAssertEqual(JobLifecycle.bulk(.cancelled).to, .cancelled)
        XCTAssertEqual(JobLifecycle.bulk(.retried).from, [.failed, .cancelled])
        XCTAssertEqual(JobLifecycle.bulk(.retried).to, .queued)
        XCTAssertEqual([JobStatus.failed, .cancelled].sqlList, "('failed', 'cancelled')")
        // An attempt's end: its state and its job's event; a lost lease counts as a failure, a return does not.
        XCTAssert(JobLifecycle.end(.lost("gone"), failures: 1, maxAttempts: 3) == (.lost, .failed(failures: 2, maxAttempts: 3), "gone"))
        XCTAssert(JobLifecycle.end(.returned("shutdown"), failures: 1, maxAttempts: 3) == (.returned, .returned, "shutdown"))
        XCTAssert(JobLifecycle.end(.succeeded, failures: 0, maxAttempts: 3) == (.succeeded, .succeeded, nil))
    }

    func testHostPort() throws {
        XCTAssertEqual(try HostPort(parsing: "127.0.0.1:7070"), HostPort(host: "127.0.0.1", port: 7070))
        XCTAssertEqual(try HostPort(parsing: "[::1]:80"), HostPort(host: "::1", port: 80))
        XCTAssertThrowsError(try HostPort(parsing: "nohost"))
        XCTAssertThrowsError(try HostPort(parsing: "h:99999"))
        XCTAssertTrue(try HostPort(parsing: "localhost:1").isLoopback)
        XCTAssertFalse(try HostPort(parsing: "0.0.0.0:1").isLoopback)
    }

    func testYAMLScalarsKeepTheirTypes() throws {
        let v = try YAML.parse("a: 8\nb: 2e-4\nc: '8'\nd: true\ne: ~\nf: 1.0\ng: q_proj")
        XCTAssertEqual(v["a"], .int(8)); XCTAssertEqual(v["b"], .number(2e-4)); XCTAssertEqual(v["c"], .string("8"))
        XCTAssertEqual(v["d"], .bool(true)); XCTAssertEqual(v["e"], .null); XCTAssertEqual(v["f"], .number(1)); XCTAssertEqual(v["g"], "q_proj")
        XCTAssertThrowsError(try YAML.parse("a: [1, 2"))
    }

    /// Error codes are a type in Swift and plain strings on the wire; the type knows which close
    /// the connection, and a code from a newer peer still decodes.
    func testErrorCodesTravelAsStringsAndKnowWhichCloseTheConnection() throws {
        let wire = try JSONEncoder().encode(ErrorReply(code: .staleAttempt, message: "m"))
        XCTAssertEqual(try JSONValue.parse(wire)["code"], "stale_attempt")
        XCTAssertEqual(try JSONDecoder().decode(ErrorReply.self, from: wire).code, .staleAttempt)
        let newer = try JSONDecoder().decode(ErrorReply.self, from: Data(#"{"code":"rate_limited","message":"m"}"#.utf8))
        XCTAssertEqual(newer.code.rawValue, "rate_limited")
        XCTAssertFalse(newer.code.closesConnection)
        XCTAssertEqual(ErrorCode.all.filter(\.closesConnection).map(\.rawValue).sorted(),
                       ["bad_frame", "bad_message", "too_many_connections", "unauthorized", "unknown_type", "version"])
        XCTAssertEqual(Set(ErrorCode.all.map(\.rawValue)).count, ErrorCode.all.count)
    }

    /// Every message type is documented, and every request names a request type and a reply type.
    func testEveryMessageTypeIsInTheProtocolDoc() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let doc = try String(contentsOf: repo.appendingPathComponent("docs/protocol.md"), encoding: .utf8)
        for t in MessageType.allCases { XCTAssert(doc.contains("`\(t.rawValue)`"), "docs/protocol.md does not mention `\(t.rawValue)`") }
        let requests: [any Request.Type] = [Hello.self, Ping.self, CoordinatorStatusQuery.self, AuditQuery.self, CollectGarbage.self, Register.self, JobRequest.self, Heartbeat.self, Events.self, UploadBegin.self,
                                            UploadChunk.self, UploadEnd.self, JobDone.self, JobFailed.self, Submit.self, ListSweeps.self,
                                            ResultsQuery.self, JobQuery.self, LogsQuery.self, WaitingQuery.self, ReadArtifact.self,
                                            CancelRequest.self, RetryRequest.self, ListWorkers.self, Unquarantine.self]
        XCTAssertEqual(Set(requests.map { $0.type }).count, requests.count, "two request types share a message type")
    }
}
