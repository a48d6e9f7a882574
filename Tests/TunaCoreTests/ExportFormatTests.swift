import XCTest
@testable import TunaCore

/// The pieces of `tuna export` that are ours (ExportTests reads whole exports back with the
/// real tensorboard and mlflow packages).
final class ExportFormatTests: XCTestCase {
    func testCRC32CIsCastagnolis() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283, "the standard check value")
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
        let c = CRC32C.checksum(Array("123456789".utf8))
        XCTAssertEqual(CRC32C.masked(Array("123456789".utf8)), ((c >> 15) | (c << 17)) &+ 0xA282_EAD8)
    }

    /// A record is length, masked CRC of the length, data, masked CRC of the data.
    func testTFRecordFraming() {
        var out = Data()
        TensorBoardEvents.record(Data([1, 2, 3]), into: &out)
        XCTAssertEqual(out.count, 8 + 4 + 3 + 4)
        XCTAssertEqual(Array(out.prefix(8)), [3, 0, 0, 0, 0, 0, 0, 0])
        let lengthCRC = out[8..<12].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
        XCTAssertEqual(UInt32(littleEndian: lengthCRC), CRC32C.masked(Array(out.prefix(8))))
        XCTAssertEqual(Array(out[12..<15]), [1, 2, 3])
    }

    /// One curve per tag over a job's attempts: the later attempt's value where two reported a
    /// step; eval numbers beyond the loss become their own tags; non-finite values are left out.
    func testCurvesMergeAttemptsAndNameTags() {
        func row(_ attempt: Int, _ e: JSONValue, at: Int64 = 0) -> EventRow { EventRow(attempt: attempt, seq: 0, at_ms: at, event: e) }
        let c = Curves(events: [
            row(1, ["event": "baseline", "loss": 3.0, "step": 0]),
            row(1, ["event": "step", "step": 1, "loss": 2.0, "lr": 0.1]),
            row(1, ["event": "step", "step": 2, "loss": 1.9, "lr": 0.1]),
            row(2, ["event": "resumed", "step": 1]),
            row(2, ["event": "step", "step": 2, "loss": 1.8, "lr": 0.1], at: 5),
            row(2, ["event": "eval", "step": 2, "epoch": 1.0, "tokens": 64, "loss": 1.5, "accuracy": 0.25]),
            row(2, ["event": "step", "step": 3, "loss": .string("nan")]),
        ])
        XCTAssertEqual(c.tags, ["eval/accuracy", "eval/baseline_loss", "eval/loss", "train/loss", "train/lr"])
        XCTAssertEqual(c.series["train/loss"]?.map(\.step), [1, 2])
        XCTAssertEqual(c.series["train/loss"]?.map(\.value), [2.0, 1.8], "attempt 2 retrained step 2: its value")
        XCTAssertEqual(c.series["train/loss"]?.last?.atMs, 5)
        XCTAssertEqual(c.series["eval/accuracy"]?.map(\.value), [0.25])
    }
}
