import Foundation
import ArgumentParser

/// A command that could not do what it was asked (a file it cannot read, a refused spec, no such
/// sweep): one line on stderr, exit 1, no usage text. `ValidationError` is kept for bad usage
/// (options that do not fit together), which exits 2 with the usage (`Tuna.main`).
struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// Runs `body`, which writes under `path`; a file-system error becomes one line naming the path
/// (a directory not writable, a full disk) instead of Foundation's error dump.
func writing<T>(_ path: String, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as Failure { throw e } catch {
        throw Failure("cannot write \(path): \((error as NSError).localizedDescription)")
    }
}
