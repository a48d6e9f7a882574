import Foundation
import NIOCore
import NIOEmbedded
import XCTest
import TunaCore
@testable import TunaWire

/// The framing handlers on NIO's EmbeddedChannel (the pipeline `Channels.configure` builds), byte
/// by byte, and the message assembler on the frames they produce.
final class FrameCodecTests: XCTestCase {
    func channel(maxLength: Int = 64) throws -> EmbeddedChannel {
        let c = EmbeddedChannel()
        try c.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxLength: maxLength)))
        try c.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
        return c
    }

    func bytes(_ b: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: b) }

    func testEncoderWritesLengthKindPayload() throws {
        let c = try channel()
        try c.writeOutbound(Frame.json(Data("{}".utf8)))
        try c.writeOutbound(Frame.binary(Data([0xFF])))
        XCTAssertEqual(try c.readOutbound(as: ByteBuffer.self).map { Array($0.readableBytesView) }, [0, 0, 0, 3, 1, 0x7B, 0x7D])
        XCTAssertEqual(try c.readOutbound(as: ByteBuffer.self).map { Array($0.readableBytesView) }, [0, 0, 0, 2, 2, 0xFF])
        XCTAssertTrue(try c.finish().isClean)
    }

    func testDecoderReassemblesFramesSplitAnywhereAndSeparatesBackToBackOnes() throws {
        let c = try channel()
        var wire: [UInt8] = []
        for f in [Frame.json(Data(#"{"type":"hello"}"#.utf8)), .binary(Data([1, 2, 3])), .json(Data("{}".utf8))] {
            try c.writeOutbound(f)
            wire += Array(try XCTUnwrap(c.readOutbound(as: ByteBuffer.self)).readableBytesView)
        }
        // one byte at a time: nothing comes out before a frame is whole
        var got: [Frame] = []
        for byte in wire {
            try c.writeInbound(bytes([byte]))
            while let f = try c.readInbound(as: Frame.self) { got.append(f) }
        }
        XCTAssertEqual(got, [.json(Data(#"{"type":"hello"}"#.utf8)), .binary(Data([1, 2, 3])), .json(Data("{}".utf8))])
        // all three in one read
        try c.writeInbound(bytes(wire))
        var again: [Frame] = []
        while let f = try c.readInbound(as: Frame.self) { again.append(f) }
        XCTAssertEqual(again, got)
        XCTAssertTrue(try c.finish().isClean)
    }

    func testAnOversizedFrameIsRefusedFromItsLengthAlone() throws {
        let c = try channel(maxLength: 64)
        // only the 4 length bytes: the payload never has to arrive, let alone be buffered
        XCTAssertThrowsError(try c.writeInbound(bytes([0, 0, 0, 65]))) { error in
            XCTAssertEqual("\(error)", "frame of 65 bytes exceeds the limit of 64")
        }
        let ok = try channel(maxLength: 64)
        try ok.writeInbound(bytes([0, 0, 0, 64, 2] + [UInt8](repeating: 7, count: 63)))
        XCTAssertEqual(try ok.readInbound(as: Frame.self), .binary(Data(repeating: 7, count: 63)))
    }

    func testEmptyFramesAndUnknownKindsAreRefused() throws {
        XCTAssertThrowsError(try channel().writeInbound(bytes([0, 0, 0, 0]))) { XCTAssertEqual("\($0)", "bad frame: empty frame") }
        XCTAssertThrowsError(try channel().writeInbound(bytes([0, 0, 0, 2, 9, 0]))) { XCTAssertEqual("\($0)", "bad frame: unknown frame kind 9") }
    }

    func testAssemblerJoinsAnAnnouncedBinaryFrameAndRefusesWhatBreaksTheRule() throws {
        var a = MessageAssembler()
        XCTAssertNil(try a.feed(.json(Data(#"{"type":"upload_chunk","id":4,"bin":3}"#.utf8))), "waits for its bytes")
        let m = try XCTUnwrap(try a.feed(.binary(Data([1, 2, 3]))))
        XCTAssertEqual(m.type, "upload_chunk")
        XCTAssertEqual(m.header.id, 4)
        XCTAssertEqual(m.binary, Data([1, 2, 3]))
        let plain = try XCTUnwrap(try a.feed(.json(Data(#"{"type":"list_sweeps","id":5}"#.utf8))))
        XCTAssertNil(plain.binary)

        func refused(_ frames: [Frame], _ code: ErrorCode, _ message: String, line: UInt = #line) {
            var a = MessageAssembler()
            do {
                for f in frames { _ = try a.feed(f) }
                XCTFail("accepted \(frames)", line: line)
            } catch let e as ErrorReply {
                XCTAssertEqual(e.code, code, line: line)
                XCTAssertEqual(e.message, message, line: line)
            } catch { XCTFail("\(error)", line: line) }
        }
        refused([.binary(Data([1]))], .badFrame, "a binary frame must follow a message that announces it")
        refused([.json(Data(#"{"type":"a","bin":2}"#.utf8)), .json(Data(#"{"type":"b"}"#.utf8))], .badFrame,
                "`a` announced 2 binary bytes but a JSON frame came")
        refused([.json(Data(#"{"type":"a","bin":2}"#.utf8)), .binary(Data([1, 2, 3]))], .badFrame, "`a` announced 2 bytes, got 3")
        refused([.json(Data(#"{"type":"a","bin":-1}"#.utf8))], .badMessage, "bin must be >= 0")
    }
}
