import CBLAS
import Foundation

/// What this OpenBLAS build delivers, for the benchmarks to print beside the engine's own
/// GFLOP/s (Benchmarks/engine, Benchmarks/train): the ceiling a matmul-bound pass can reach here.
public enum BLASProbe {
    /// sgemm GFLOP/s on an [m, k] x [k, n] product, the best of 4 runs.
    public static func sgemmGFLOPs(m: Int, n: Int, k: Int) -> Double {
        let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: k * n)
        var c = [Float](repeating: 0, count: m * n)
        var best = Double.infinity
        for _ in 0..<4 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, &c, Int32(n))
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        return 2 * Double(m) * Double(n) * Double(k) / best / 1e9
    }
}
