import CBLAS
import Foundation

/// Row-major matrix products through OpenBLAS. Every matrix product in the project goes through
/// `sgemm` so that one library (and one thread setting) decides the speed.
public enum BLAS {
    /// C[M×N] = alpha · op(A) · op(B) + beta · C, all row-major.
    /// op(A) is M×K (A stored K×M when `transA`), op(B) is K×N (B stored N×K when `transB`).
    /// `lda`, `ldb`, `ldc` are row strides in elements, so a head's slice of a wider matrix can be
    /// used in place (attention reads q, k, v straight out of the fused qkv buffer).
    @inline(__always)
    public static func sgemm(
        transA: Bool = false, transB: Bool = false,
        m: Int, n: Int, k: Int,
        alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        if fewRowProducts && !transA && m <= SkinnyGEMM.maxRows && k >= 16 && m * n * k > SkinnyGEMM.minimumWork {
            SkinnyGEMM.run(
                transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c,
                ldc: ldc)
            return
        }
        cblas_sgemm(
            CblasRowMajor,
            transA ? CblasTrans : CblasNoTrans,
            transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha,
            a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Set while decoding (`BLAS.$fewRowProducts.withValue(true) { … }`): products with few rows
    /// then run SkinnyGEMM, which reads the weights once instead of packing them per call. Off
    /// everywhere else, so training and scoring keep OpenBLAS's per-row sums, which do not depend
    /// on how many rows a rank holds (world sizes agree bit for bit).
    @TaskLocal public static var fewRowProducts = false

    /// The kernel family OpenBLAS chose at load time (e.g. "SkylakeX", "Haswell").
    public static var coreName: String { String(cString: openblas_get_corename()) }
    /// The library's build description (version, DYNAMIC_ARCH, thread model).
    public static var configuration: String { String(cString: openblas_get_config()) }
    public static var threads: Int { Int(openblas_get_num_threads()) }
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }

    /// One line for logs and benchmark output: which kernels and how many threads are in use.
    public static var summary: String {
        "OpenBLAS core=\(coreName) threads=\(threads) (\(configuration))"
            + (FastPath.note.map { "\nnote: " + $0 } ?? "")
    }
}
