import CDNNL
import Foundation

/// Matrix products with bf16 inputs, fp32 accumulation and fp32 outputs: what PyTorch's CPU
/// autocast does for matmuls (docs/platform.md §9, fact 20). oneDNN runs them (AVX512_BF16 or AMX
/// kernels, ~2× the fp32 sgemm peak); where oneDNN has no bf16 matmul for this CPU the same
/// products are computed in fp32 from the bf16-rounded inputs (exact products, slower), and
/// `engine` says so. The arguments are `BLAS.sgemm`'s.
public enum BFloat16GEMM {
    public enum Engine: String, Sendable {
        case oneDNN = "onednn"
        /// bf16-rounded inputs expanded to fp32, then OpenBLAS sgemm.
        case emulated
    }

    /// oneDNN where it can build a bf16 matmul on this CPU, else emulated; decided once.
    public static let engine: Engine = {
        var error = [CChar](repeating: 0, count: 256)
        guard let probe = rlhf_bf16_matmul_create(16, 16, 16, 0, 1, 16, 16, 16, 1, 0, &error, error.count) else {
            return .emulated
        }
        rlhf_bf16_matmul_destroy(probe)
        return .oneDNN
    }()

    /// The linked oneDNN's version ("2.6.3").
    public static var libraryVersion: String { String(cString: rlhf_dnnl_version()) }

    /// "oneDNN 2.6.3 (avx512_core_bf16)" or why the products are emulated.
    public static var summary: String {
        switch engine {
        case .oneDNN: "oneDNN \(String(cString: rlhf_dnnl_version())) (\(String(cString: rlhf_dnnl_isa_name())))"
        case .emulated: "emulated in fp32 (oneDNN \(String(cString: rlhf_dnnl_version())) has no bf16 matmul here)"
        }
    }

    /// C[M×N] = alpha · op(A) · op(B) + beta · C; A and B bf16, C fp32 (row-major, BLAS.sgemm's layout).
    public static func gemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<UInt16>, lda: Int, b: UnsafePointer<UInt16>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        let shape = Shape(
            m: m, n: n, k: k, transA: transA, transB: transB, lda: lda, ldb: ldb, ldc: ldc,
            alpha: alpha.bitPattern, beta: beta.bitPattern)
        // Enough rows: split them over the kernel threads (Parallel, parked between regions), each
        // part one single-threaded oneDNN call. oneDNN's own OpenMP threads spin between products
        // on the cores the elementwise kernels and OpenBLAS need. A row's bits do not depend on
        // how many rows a call has (BFloat16Tests); splitting columns would change them, so a
        // product with few rows runs as one call on oneDNN's threads instead.
        guard m >= Self.rowsToSplit else {
            return run(shape, a: a, b: b, c: c, threads: BLAS.threads)
        }
        Parallel.forEach(m, costPerItem: 2 * n * max(k, 1)) { rows in
            var part = shape
            part.m = rows.count
            run(part, a: a + rows.lowerBound * (transA ? 1 : lda), b: b, c: c + rows.lowerBound * ldc, threads: 1)
        }
    }

    /// Rows from which a product is split over the kernel threads (16 rows each at least).
    static let rowsToSplit = 32

    /// One product, or part of one, on the calling thread and `threads` OpenMP threads.
    static func run(
        _ s: Shape, a: UnsafePointer<UInt16>, b: UnsafePointer<UInt16>, c: UnsafeMutablePointer<Float>, threads: Int
    ) {
        if engine == .oneDNN, let matmul = cache.primitive(for: s) {
            cache.run(matmul, a: a, b: b, c: c, threads: threads, shape: s)
            return
        }
        emulated(s, a: a, b: b, c: c)
    }

    /// The same with A in fp32, rounded to bf16 first (an activation times bf16 weights).
    public static func gemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<UInt16>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        withRounded(a, rows: transA ? k : m, columns: transA ? m : k, stride: lda) { a16, lda16 in
            gemm(
                transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a16, lda: lda16, b: b, ldb: ldb,
                beta: beta, c: c, ldc: ldc)
        }
    }

    /// The same with A and B in fp32, both rounded to bf16 first (a weight gradient, doutᵀ·x).
    public static func gemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        withRounded(b, rows: transB ? n : k, columns: transB ? k : n, stride: ldb) { b16, ldb16 in
            gemm(
                transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b16, ldb: ldb16,
                beta: beta, c: c, ldc: ldc)
        }
    }

    /// C = alpha · op(A) · op(B) + beta · C in fp32, B stored in bf16: B's values are expanded
    /// (exactly) block by block, ~4 MiB of fp32 at a time, and multiplied by OpenBLAS sgemm. An
    /// fp32 pass over a trunk that keeps its weights in bf16 only runs its products this way.
    public static func fp32Product(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<UInt16>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        // transB: B is [N, K], a block of its rows is a block of C's columns. Else B is [K, N], a
        // block of its rows a block of the sum over K (beta applied with the first).
        let width = transB ? k : n, blockRows = max(1, (1 << 20) / max(width, 1))
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(min(blockRows, transB ? n : k) * width, 1))
        defer { scratch.deallocate() }
        guard k > 0 else {
            return BLAS.sgemm(
                transA: transA, transB: transB, m: m, n: n, k: 0, alpha: alpha, a: a, lda: lda, b: scratch,
                ldb: max(width, 1), beta: beta, c: c, ldc: ldc)
        }
        for first in stride(from: 0, to: transB ? n : k, by: blockRows) {
            let rows = min(blockRows, (transB ? n : k) - first)
            for r in 0..<rows { BFloat16.expand(b + (first + r) * ldb, to: scratch + r * width, count: width) }
            if transB {
                BLAS.sgemm(
                    transA: transA, transB: true, m: m, n: rows, k: k, alpha: alpha, a: a, lda: lda, b: scratch,
                    ldb: width, beta: beta, c: c + first, ldc: ldc)
            } else {
                BLAS.sgemm(
                    transA: transA, m: m, n: n, k: rows, alpha: alpha, a: a + first * (transA ? lda : 1), lda: lda,
                    b: scratch, ldb: width, beta: first == 0 ? beta : 1, c: c, ldc: ldc)
            }
        }
    }

    /// Runs `body` with a contiguous bf16 copy of a strided fp32 [rows, columns] matrix.
    static func withRounded(
        _ x: UnsafePointer<Float>, rows: Int, columns: Int, stride: Int,
        _ body: (UnsafePointer<UInt16>, Int) -> Void
    ) {
        let copy = UnsafeMutablePointer<UInt16>.allocate(capacity: max(rows * columns, 1))
        defer { copy.deallocate() }
        BFloat16.convert(rows: rows, columns: columns, x, stride: stride, to: copy)
        body(copy, columns)
    }

    /// fp32 sgemm of the inputs expanded from bf16: the same products, fp32 sums.
    static func emulated(_ s: Shape, a: UnsafePointer<UInt16>, b: UnsafePointer<UInt16>, c: UnsafeMutablePointer<Float>)
    {
        let aRows = s.transA ? s.k : s.m, aColumns = s.transA ? s.m : s.k
        let bRows = s.transB ? s.n : s.k, bColumns = s.transB ? s.k : s.n
        let a32 = UnsafeMutablePointer<Float>.allocate(capacity: max(aRows * aColumns, 1))
        let b32 = UnsafeMutablePointer<Float>.allocate(capacity: max(bRows * bColumns, 1))
        defer {
            a32.deallocate()
            b32.deallocate()
        }
        for r in 0..<aRows { BFloat16.expand(a + r * s.lda, to: a32 + r * aColumns, count: aColumns) }
        for r in 0..<bRows { BFloat16.expand(b + r * s.ldb, to: b32 + r * bColumns, count: bColumns) }
        BLAS.sgemm(
            transA: s.transA, transB: s.transB, m: s.m, n: s.n, k: s.k, alpha: Float(bitPattern: s.alpha),
            a: a32, lda: aColumns, b: b32, ldb: bColumns, beta: Float(bitPattern: s.beta), c: c, ldc: s.ldc)
    }

    /// A product's shape, strides and scalars: what one oneDNN primitive is built for.
    struct Shape: Hashable {
        var m, n, k: Int
        var transA, transB: Bool
        var lda, ldb, ldc: Int
        var alpha, beta: UInt32  // bit patterns
    }

    static let cache = PrimitiveCache()
}

/// oneDNN primitives by shape, made on first use and kept for the process (a model has a few
/// dozen shapes). Products run concurrently: each execution has its own scratchpad and stream.
final class PrimitiveCache: @unchecked Sendable {
    private let lock = NSLock()
    private var primitives: [BFloat16GEMM.Shape: OpaquePointer] = [:]

    func primitive(for shape: BFloat16GEMM.Shape) -> OpaquePointer? {
        lock.lock()
        defer { lock.unlock() }
        if let known = primitives[shape] { return known }
        var error = [CChar](repeating: 0, count: 256)
        guard
            let made = rlhf_bf16_matmul_create(
                Int64(shape.m), Int64(shape.n), Int64(shape.k), shape.transA ? 1 : 0, shape.transB ? 1 : 0,
                Int64(shape.lda), Int64(shape.ldb), Int64(shape.ldc), Float(bitPattern: shape.alpha),
                Float(bitPattern: shape.beta), &error, error.count)
        else { return nil }
        primitives[shape] = made
        return made
    }

    func run(
        _ matmul: OpaquePointer, a: UnsafePointer<UInt16>, b: UnsafePointer<UInt16>, c: UnsafeMutablePointer<Float>,
        threads: Int, shape: BFloat16GEMM.Shape
    ) {
        let status = rlhf_bf16_matmul_execute(matmul, a, b, c, Int32(threads))
        // A primitive that was built runs unless memory is exhausted; a wrong product must not pass.
        if status != 0 { fatalError("oneDNN bf16 matmul \(shape) failed with status \(status)") }
    }
}
