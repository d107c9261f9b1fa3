import Kernels

/// A weight matrix as the products read it: its fp32 values and, in precision bf16, their bf16
/// rounding at the same offset.
struct WeightMatrix {
    let fp32: UnsafePointer<Float>
    let bf16: UnsafePointer<UInt16>?
}

/// The precision a trunk's weight products run in, and the bf16 copy of its weights they read in
/// bf16 (mixed precision as PyTorch's CPU autocast: bf16 inputs, fp32 sums and outputs; docs/
/// architecture.md §12). A frozen trunk's copy is made once; a trainable trunk's copy follows its
/// fp32 master weights, refreshed before every pass, so a step never reads stale weights.
public final class MatmulWeights: @unchecked Sendable {
    public private(set) var precision: Precision = .fp32
    /// The weights do not change while this precision is in use (the Hydra trunk, a reference).
    public private(set) var frozen = false
    private(set) var copy: BFloat16Buffer?

    public init() {}

    /// Set for a pass that must run in fp32 on a trunk in bf16 (`MatmulWeights.$exact.withValue(true)
    /// { … }`): PPO's report compares bf16 sampling with fp32 scoring of the same tokens.
    @TaskLocal public static var exact = false

    /// The precision passes run in now: fp32 inside an `exact` scope.
    public var effective: Precision { Self.exact ? .fp32 : precision }

    /// Switches `weights` to `precision`; in bf16 the copy is made now.
    func use(_ precision: Precision, frozen: Bool, weights: FloatBuffer) {
        self.precision = precision
        self.frozen = frozen
        copy = precision == .bf16 ? BFloat16Buffer(rounding: weights) : nil
    }

    /// Before a pass: a trainable trunk's bf16 copy takes its current fp32 weights.
    func refresh(from weights: FloatBuffer) {
        if let copy, !frozen { copy.update(from: weights) }
    }

    func matrix(_ weights: FloatBuffer, _ offset: Int) -> WeightMatrix {
        WeightMatrix(
            fp32: weights.pointer + offset, bf16: Self.exact ? nil : copy.map { UnsafePointer($0.pointer + offset) })
    }
}

extension CausalLM {
    public var precision: Precision { matmulWeights.precision }

    /// Runs this trunk's weight products in `precision` from now on. `frozen`: its weights will
    /// not change (no optimizer step touches them), so a bf16 copy is made once.
    public func use(_ precision: Precision, frozen: Bool) {
        matmulWeights.use(precision, frozen: frozen, weights: weights)
    }

    func matrix(_ offset: Int) -> WeightMatrix { matmulWeights.matrix(weights, offset) }
}

/// C[M×N] = alpha · op(X) · op(W) + beta · C with X an fp32 activation and W a weight matrix:
/// bf16 products when W has a bf16 copy, else fp32 sgemm. Arguments as `BLAS.sgemm`'s.
func weightProduct(
    transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
    x: UnsafePointer<Float>, lda: Int, w: WeightMatrix, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if let bf16 = w.bf16 {
        BFloat16GEMM.gemm(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: x, lda: lda, b: bf16, ldb: ldb,
            beta: beta, c: c, ldc: ldc)
    } else {
        BLAS.sgemm(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: x, lda: lda, b: w.fp32, ldb: ldb,
            beta: beta, c: c, ldc: ldc)
    }
}

/// A product of two activations in the precision of `like` (a weight gradient, doutᵀ·x, runs in
/// bf16 when the weight's forward does, as autocast runs it).
func activationProduct(
    like w: WeightMatrix, transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if w.bf16 != nil {
        BFloat16GEMM.gemm(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
            beta: beta, c: c, ldc: ldc)
    } else {
        BLAS.sgemm(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
            beta: beta, c: c, ldc: ldc)
    }
}
