import Kernels

/// A weight matrix as the products read it: its fp32 values (nil where the trunk keeps it in bf16
/// only) and, in precision bf16, their bf16 rounding at the same offset.
struct WeightMatrix {
    let fp32: UnsafePointer<Float>?
    let bf16: UnsafePointer<UInt16>?
    /// Inside an `exact` scope: the products run in fp32.
    let exact: Bool
    /// Whether the products with this weight run with bf16 inputs.
    var inBF16: Bool { bf16 != nil && !exact }
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
    /// Where the matrices whose fp32 values were given up start (`keepOnlyBF16`): their values live
    /// in `copy` only. A set: `matrix` looks a weight's offset up before every product.
    private var bf16Only: Set<Int> = []

    public init() {}

    /// Whether every fp32 weight is still held (false once a frozen trunk keeps its matrices in bf16 only).
    public var holdsFP32: Bool { bf16Only.isEmpty }

    /// Set for a pass that must run in fp32 on a trunk in bf16 (`MatmulWeights.$exact.withValue(true)
    /// { … }`): PPO's report compares bf16 sampling with fp32 scoring of the same tokens.
    @TaskLocal public static var exact = false

    /// The precision passes run in now: fp32 inside an `exact` scope.
    public var effective: Precision { Self.exact ? .fp32 : precision }

    /// Switches `weights` to `precision`; in bf16 the copy is made now. Never after `keepOnlyBF16`:
    /// the fp32 values it would round are gone (clone and merge refuse such a trunk before this).
    func use(_ precision: Precision, frozen: Bool, weights: FloatBuffer) {
        precondition(holdsFP32, "MatmulWeights.use: this trunk keeps its matrices in bf16 only")
        self.precision = precision
        self.frozen = frozen
        copy = precision == .bf16 ? BFloat16Buffer(rounding: weights) : nil
    }

    /// Frozen in `precision` with a bf16 copy made elsewhere (a host's shared segment, filled by
    /// the host's first rank): nothing is rounded here.
    func use(_ precision: Precision, frozenWith copy: BFloat16Buffer?) {
        precondition(holdsFP32, "MatmulWeights.use: this trunk keeps its matrices in bf16 only")
        (self.precision, frozen, self.copy) = (precision, true, precision == .bf16 ? copy : nil)
    }

    /// Before a pass: a trainable trunk's bf16 copy takes its current fp32 weights.
    func refresh(from weights: FloatBuffer) {
        if let copy, !frozen { copy.update(from: weights) }
    }

    /// A frozen trunk in bf16 gives up the fp32 values of `ranges` (the projection matrices: its
    /// products read the bf16 copy). Their memory goes back to the system (docs/architecture.md
    /// §12); embeddings, norms and biases stay fp32. Does nothing in fp32 or on a trainable trunk.
    func keepOnlyBF16(_ ranges: [Range<Int>], of weights: FloatBuffer) {
        guard precision == .bf16, frozen, copy != nil, holdsFP32 else { return }
        for range in ranges { weights.releasePages(range) }
        bf16Only = Set(ranges.map(\.lowerBound))
    }

    func matrix(_ weights: FloatBuffer, _ offset: Int) -> WeightMatrix {
        let dropped = bf16Only.contains(offset)  // offsets are where tensors start
        return WeightMatrix(
            fp32: dropped ? nil : UnsafePointer(weights.pointer + offset),
            bf16: copy.map { UnsafePointer($0.pointer + offset) }, exact: Self.exact)
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

    /// Frozen in `precision`, reading `copy` as its bf16 weights (made by another process of the
    /// host into a shared segment, `HostWeights`); `copy` must round this trunk's weights.
    public func useFrozen(_ precision: Precision, copy: BFloat16Buffer?) {
        matmulWeights.use(precision, frozenWith: copy)
    }

    /// The bf16 copy the products read (nil in fp32).
    public var bf16Copy: BFloat16Buffer? { matmulWeights.copy }

    /// out [ids.count, C] = rows `ids` of the token embedding (at `offset`), in fp32 in every
    /// precision: the table stays fp32 (autocast's lookups are fp32 too; a bf16 table moved the
    /// golden log-probs 0.07 from transformers'), only its LM-head products read the bf16 copy.
    func embeddingRows(offset: Int, ids: [Int32], into out: UnsafeMutablePointer<Float>) {
        let C = config.channels
        for (r, id) in ids.enumerated() { (out + r * C).update(from: weights.pointer + offset + Int(id) * C, count: C) }
    }

    /// Frozen in bf16 (`use(.bf16, frozen: true)`), the trunk gives up the fp32 values of its
    /// projection matrices (`bf16OnlyRanges`): they then take 2 bytes per parameter instead of 6. Passes
    /// run as before (an `exact` pass expands the bf16 weights); cloning, merging and saving the
    /// trunk are refused from then on. Does nothing in fp32 or on a trainable trunk.
    public func keepOnlyBF16() {
        matmulWeights.keepOnlyBF16(config.bf16OnlyRanges, of: weights)
    }

    /// Throws unless every fp32 weight is held: `what` (a clone, a merge, a save) needs them.
    public func requireFP32Weights(for what: String) throws {
        guard matmulWeights.holdsFP32 else {
            throw ModelError.input(
                "\(what): this trunk keeps its matrices in bf16 only (a frozen trunk in precision bf16); load the "
                    + "model again for its fp32 weights")
        }
    }
}

/// C[M×N] = alpha · op(X) · op(W) + beta · C with X an fp32 activation and W a weight matrix:
/// bf16 products when W has a bf16 copy, else fp32 sgemm. Arguments as `BLAS.sgemm`'s.
func weightProduct(
    transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
    x: UnsafePointer<Float>, lda: Int, w: WeightMatrix, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if let bf16 = w.bf16, w.inBF16 {
        BFloat16GEMM.gemm(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: x, lda: lda, b: bf16, ldb: ldb,
            beta: beta, c: c, ldc: ldc)
    } else if let fp32 = w.fp32 {
        BLAS.sgemm(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: x, lda: lda, b: fp32, ldb: ldb,
            beta: beta, c: c, ldc: ldc)
    } else if let bf16 = w.bf16 {  // an exact pass over weights kept in bf16 only
        BFloat16GEMM.fp32Product(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: x, lda: lda, b: bf16, ldb: ldb,
            beta: beta, c: c, ldc: ldc)
    } else {
        preconditionFailure("weightProduct: a weight with neither fp32 nor bf16 values")
    }
}

/// A product of two activations in the precision of `like` (a weight gradient, doutᵀ·x, runs in
/// bf16 when the weight's forward does, as autocast runs it).
func activationProduct(
    like w: WeightMatrix, transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if w.inBF16 {
        BFloat16GEMM.gemm(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
            beta: beta, c: c, ldc: ldc)
    } else {
        BLAS.sgemm(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
            beta: beta, c: c, ldc: ldc)
    }
}
