import Foundation
import XCTest
@testable import TunaCore

/// A spec comes from whoever can reach the coordinator: what could make a small text expensive
/// or ambiguous is refused before anything is expanded (issue 13, finding 1).
final class YAMLTests: XCTestCase {
    func refusal(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        do { _ = try SweepSpec.plan(yaml: yaml); XCTFail("accepted", file: file, line: line); return "" } catch { return "\(error)" }
    }

    /// The billion-laughs shape that once held the coordinator for 90 s and 1 GB: nine aliases a
    /// level, nine levels. Refused at the first anchor, at once.
    func testAnAliasBombIsRefusedAtOnce() {
        var yaml = "name: bomb\ntrainer: command\ncommand: [x]\na0: &a0 [x, x, x, x, x, x, x, x, x]\n"
        for level in 1...9 {
            yaml += "a\(level): &a\(level) [" + Array(repeating: "*a\(level - 1)", count: 9).joined(separator: ", ") + "]\n"
        }
        XCTAssertLessThan(yaml.utf8.count, 1000)
        let start = Date()
        let message = refusal(yaml)
        XCTAssertLessThan(Date().timeIntervalSince(start), 1.0)
        XCTAssert(message.contains("a0: YAML anchors and aliases (&a0, *a0) are not allowed"), message)
    }

    func testMergeKeysTagsAndNonStringKeysAreRefused() {
        XCTAssert(refusal("name: m\ntrainer: command\ncommand: [x]\nextra: {<<: {a: 1}}").contains("extra.<<: YAML merge keys are not allowed"))
        XCTAssert(refusal("name: m\ntrainer: command\ncommand: [x]\nlr: !!float 1").contains("lr: YAML tags (tag:yaml.org,2002:float) are not allowed"))
        XCTAssert(refusal("name: m\ntrainer: command\ncommand: [x]\nextra: {1: 2}").contains("extra: keys must be strings (got `1`)"))
        XCTAssert(refusal("name: m\ntrainer: command\ncommand: [x]\ntrue: 2").contains("spec: keys must be strings (got `true`)"))
        // A quoted key is a string.
        XCTAssertNoThrow(try SweepSpec.plan(yaml: "name: m\ntrainer: command\ncommand: [x]\nextra: {\"1\": 2}"))
    }

    func testNumbersOutOfRangeAreNamed() {
        let m = refusal("name: n\ntrainer: native\nmodel: m\ndataset: {path: d}\nlora: {rank: 1e400}")
        XCTAssert(m.contains("lora.rank: 1e400 is out of range"), m)
    }

    func testSizeDepthAndScalarLimits() {
        let big = "name: big\ntrainer: command\ncommand: [x]\npad: \"" + String(repeating: "x", count: YAML.Limits.bytes) + "\"\n"
        XCTAssert(refusal(big).contains("bytes; a spec may have at most \(YAML.Limits.bytes)"))
        let deep = "name: d\ntrainer: command\ncommand: [x]\nv: " + String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        XCTAssert(refusal(deep).contains("nested more than \(YAML.Limits.depth) levels deep"))
        let long = "name: l\ntrainer: command\ncommand: [x]\nv: \"" + String(repeating: "y", count: YAML.Limits.scalarBytes + 1) + "\""
        XCTAssert(refusal(long).contains("v: a value of \(YAML.Limits.scalarBytes + 1) bytes"))
    }
}
