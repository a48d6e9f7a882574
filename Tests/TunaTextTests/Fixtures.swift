import Foundation
import XCTest
@testable import TunaText

/// Access to the committed fixtures (copied into the test bundle as `Fixtures/`).
enum Fixture {
    static func url(_ name: String) throws -> URL {
        let base = try XCTUnwrap(Bundle.module.resourceURL, "test bundle has no resources")
        let url = base.appendingPathComponent("Fixtures").appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw XCTSkip("missing fixture \(name); run PYTHONPATH=Tests/Python python3 -m reference.text_goldens")
        }
        return url
    }

    static func decode<T: Decodable>(_ type: T.Type, _ name: String) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(contentsOf: url(name)))
    }

    /// The real o200k_harmony tokenizer, loaded once for the whole test run.
    static func harmony() throws -> Tokenizer {
        if let cached = Cache.shared.tokenizer { return cached }
        let tokenizer = try Tokenizer(tiktokenFile: url("o200k_base.tiktoken"))
        Cache.shared.tokenizer = tokenizer
        return tokenizer
    }

    /// Loading the 200k-token vocabulary takes a moment; share it between tests.
    private final class Cache: @unchecked Sendable {
        static let shared = Cache()
        private let lock = NSLock()
        private var value: Tokenizer?
        var tokenizer: Tokenizer? {
            get { lock.withLock { value } }
            set { lock.withLock { value = newValue } }
        }
    }

    /// A fresh scratch directory for tests that write files.
    static func scratchDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("tunatext-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }
}
