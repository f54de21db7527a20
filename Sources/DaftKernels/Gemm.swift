import CBLAS

/// Row-major single-precision GEMM on OpenBLAS: C = alpha · op(A) · op(B) + beta · C.
///
/// `m×k` is op(A), `k×n` is op(B); leading dimensions are those of the stored (untransposed) matrices.
@inline(__always)
public func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                  beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        // C = beta·C (BLAS does the same, but be explicit for empty batches)
        for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
        return
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// OpenBLAS thread control (the process-wide BLAS thread pool).
public enum BLASThreads {
    /// Sets the number of threads OpenBLAS uses for subsequent calls.
    public static func set(_ count: Int) { openblas_set_num_threads(Int32(max(1, count))) }
    /// The number of threads OpenBLAS will use.
    public static var current: Int { Int(openblas_get_num_threads()) }
    /// The OpenBLAS build configuration string (core type, version).
    public static var configuration: String { String(cString: openblas_get_config()) + " core=" + String(cString: openblas_get_corename()) }
}
