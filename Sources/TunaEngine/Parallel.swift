import Foundation

/// Splits the engine's own (non-BLAS) loops over the cores. OpenBLAS parallelizes each sgemm
/// itself; between sgemms the softmax, SwiGLU and scatter loops would otherwise leave every
/// core but one idle. Never call BLAS from inside `chunks`: the work items run concurrently.
enum Parallel {
    static let workers = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Runs body(range) over contiguous chunks of 0..<count, concurrently when worthwhile.
    /// `minChunk` keeps tiny loops serial (dispatch costs microseconds).
    static func chunks(_ count: Int, minChunk: Int = 1, _ body: @Sendable (Range<Int>) -> Void) {
        let pieces = min(workers, max(1, count / max(1, minChunk)))
        if pieces <= 1 {
            if count > 0 { body(0..<count) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: pieces) { p in
            let lo = count * p / pieces, hi = count * (p + 1) / pieces
            if lo < hi { body(lo..<hi) }
        }
    }
}

/// A raw buffer pointer that may cross into `Parallel.chunks` work items. Safe only because
/// every caller writes disjoint index ranges from different items (documented at each use).
struct SharedMutable<T>: @unchecked Sendable {
    let base: UnsafeMutablePointer<T>
    init(_ base: UnsafeMutablePointer<T>) { self.base = base }
    subscript(i: Int) -> T {
        get { base[i] }
        nonmutating set { base[i] = newValue }
    }
}

struct Shared<T>: @unchecked Sendable {
    let base: UnsafePointer<T>
    init(_ base: UnsafePointer<T>) { self.base = base }
    subscript(i: Int) -> T { base[i] }
}
