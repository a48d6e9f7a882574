import Foundation
import TunaCore

/// Buffers each attempt's events with sequence numbers until the coordinator acknowledges
/// them. A batch lost with a dropped connection is sent again; the coordinator stores each
/// (attempt, seq) once, so nothing is lost and nothing is doubled.
actor EventSink {
    private var pending: [AttemptRef: [EventRecord]] = [:]
    private var nextSeq: [AttemptRef: Int64] = [:]
    static let maxBatch = 512
    /// Woken on every append (the sender has something to send) and every acknowledgement or
    /// drop (an attempt may be drained).
    let changed = Wakeup()

    func append(_ ref: AttemptRef, _ event: JSONValue) {
        let seq = nextSeq[ref, default: 0]
        nextSeq[ref] = seq + 1
        pending[ref, default: []].append(EventRecord(seq: seq, at_ms: Int64(Date().timeIntervalSince1970 * 1000), event: event))
        changed.wake()
    }

    /// Whether anything waits to be sent, and the wake-up generation it was read at.
    func hasPending() -> (Bool, UInt64) { (pending.values.contains { !$0.isEmpty }, changed.generation) }

    /// Returns once every event of `ref` appended so far is acknowledged (or dropped).
    func drained(_ ref: AttemptRef) async throws {
        while true {
            let generation = changed.generation
            if isDrained(ref) { return }
            try await changed.wait(after: generation)
        }
    }

    func batches() -> [Events] {
        pending.compactMap { ref, events in
            events.isEmpty ? nil : Events(job: ref.job, attempt: ref.attempt, events: Array(events.prefix(EventSink.maxBatch)))
        }
    }

    func acknowledge(_ ref: AttemptRef, through: Int64) {
        pending[ref]?.removeAll { $0.seq <= through }
        changed.wake()
    }

    func isDrained(_ ref: AttemptRef) -> Bool { pending[ref]?.isEmpty ?? true }

    /// Forgets an attempt whose lease is gone (its events would be refused anyway).
    func drop(_ ref: AttemptRef) { pending[ref] = nil; nextSeq[ref] = nil; changed.wake() }
}
