import CBLAS

/// The one door to OpenBLAS. Every matmul in the engine is a row-major cblas_sgemm through here.
public enum BLAS {
    /// C[M, N] = alpha * op(A) @ op(B) + beta * C, row-major with explicit leading dimensions so
    /// callers can multiply strided views (one attention head inside a [T, H*D] buffer).
    @inline(__always)
    static func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                      a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                      beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// nn.Linear: y[N, out] = x[N, in] @ W[out, in]^T + bias[out]. Bias is written first and
    /// sgemm accumulates onto it (beta = 1), saving a pass over y.
    static func linear(_ x: [Float], rows: Int, inFeatures: Int, weight: [Float], bias: [Float]?, outFeatures: Int) -> [Float] {
        var y = [Float](repeating: 0, count: rows * outFeatures)
        if let bias {
            y.withUnsafeMutableBufferPointer { yp in
                for r in 0..<rows { for o in 0..<outFeatures { yp[r * outFeatures + o] = bias[o] } }
            }
        }
        x.withUnsafeBufferPointer { xp in
            weight.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in
                    guard let xb = xp.baseAddress, let wb = wp.baseAddress, let yb = yp.baseAddress else { return }
                    sgemm(transB: true, m: rows, n: outFeatures, k: inFeatures, a: xb, lda: inFeatures,
                          b: wb, ldb: inFeatures, beta: bias == nil ? 0 : 1, c: yb, ldc: outFeatures)
                }
            }
        }
        return y
    }

    /// OpenBLAS worker threads (the engine's own loops are single-threaded).
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
    public static var threads: Int { Int(openblas_get_num_threads()) }
}
