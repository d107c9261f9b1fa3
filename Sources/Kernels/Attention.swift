/// Causal multi-head self-attention over a fused qkv buffer (GPT-2's c_attn output), with every
/// product in cblas_sgemm: per (batch, head) S = q·kᵀ/√d, P = causal softmax(S), y = P·v.
/// q, k and v are read in place with row stride 3C (no transposes or copies).
///
/// Shapes: qkv [B, T, 3C] (q | k | v, head h at columns h·d ..< (h+1)·d of each third),
/// probs [B, H, T, T] saved for backward (row t is zero after column t), out [B, T, C].
public struct AttentionShape: Sendable {
    public let batch: Int, tokens: Int, channels: Int, heads: Int
    public var headSize: Int { channels / heads }
    public init(batch: Int, tokens: Int, channels: Int, heads: Int) {
        precondition(channels % heads == 0, "attention: \(channels) channels do not split into \(heads) heads")
        self.batch = batch
        self.tokens = tokens
        self.channels = channels
        self.heads = heads
    }
}

public func attentionForward(
    out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
    qkv: UnsafePointer<Float>, shape s: AttentionShape
) {
    let t = s.tokens, c = s.channels, d = s.headSize
    let scale = 1 / Float(d).squareRoot()
    // (batch, head) pairs are independent: split across the kernel threads (each sgemm then runs
    // single-threaded in its chunk; at T = 128 one head's products are too small to split well).
    Parallel.forEach(s.batch * s.heads, costPerItem: 4 * t * t * d) { items in
        for item in items {
            let b = item / s.heads, h = item % s.heads
            let base = qkv + b * t * 3 * c
            let q = base + h * d, k = base + c + h * d, v = base + 2 * c + h * d
            let p = probs + (b * s.heads + h) * t * t
            // S[T×T] = scale · q[T×d] · k[T×d]ᵀ. The upper triangle is computed and then
            // discarded: at T ≤ 1024 attention is a few % of the FLOPs and one big gemm beats
            // many small triangular ones.
            BLAS.sgemm(transB: true, m: t, n: t, k: d, alpha: scale, a: q, lda: 3 * c, b: k, ldb: 3 * c, c: p, ldc: t)
            for row in 0..<t { causalSoftmaxRow(p + row * t, valid: row + 1, width: t) }
            BLAS.sgemm(m: t, n: d, k: t, a: p, lda: t, b: v, ldb: 3 * c, c: out + b * t * c + h * d, ldc: c)
        }
    }
}

/// In place: row[0..<valid] ← softmax(row[0..<valid]); row[valid..<width] ← 0.
/// Separate max, exp, sum and scale passes vectorise; one fused loop does not (docs/platform.md §3).
@inline(__always)
public func causalSoftmaxRow(_ row: UnsafeMutablePointer<Float>, valid: Int, width: Int) {
    let m = vectorMax(row, valid)
    for j in 0..<valid { row[j] = fastExp(row[j] - m) }
    let inv = 1 / vectorSum(row, valid)
    for j in 0..<valid { row[j] *= inv }
    if valid < width { (row + valid).update(repeating: 0, count: width - valid) }
}

/// In place: dS = scale · P ⊙ (dP − Σ_j P·dP) over row[0..<valid] (softmax's backward), 0 after.
@inline(__always)
public func causalSoftmaxBackwardRow(
    _ dp: UnsafeMutablePointer<Float>, probs p: UnsafePointer<Float>, valid: Int, width: Int, scale: Float
) {
    let inner = vectorDot(p, dp, valid)
    for j in 0..<valid { dp[j] = p[j] * (dp[j] - inner) * scale }
    if valid < width { (dp + valid).update(repeating: 0, count: width - valid) }
}

/// Accumulates into dqkv [B, T, 3C] (+=) given dout [B, T, C].
/// dP = dy·vᵀ, dv = Pᵀ·dy, dS = P ⊙ (dP − rowsum(P ⊙ dP)) · scale, dq = dS·k, dk = dSᵀ·q.
/// scratch holds T·T floats.
public func attentionBackward(
    dqkv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
    qkv: UnsafePointer<Float>, probs: UnsafePointer<Float>, shape s: AttentionShape,
    scratch: UnsafeMutablePointer<Float>
) {
    let t = s.tokens, c = s.channels, d = s.headSize
    let scale = 1 / Float(d).squareRoot()
    // (batch, head) pairs write disjoint slices of dqkv: split across the kernel threads, each
    // chunk with its own T×T scratch.
    Parallel.forEach(s.batch * s.heads, costPerItem: 8 * t * t * d) { items in
        let own = items.lowerBound == 0 ? nil : UnsafeMutablePointer<Float>.allocate(capacity: t * t)
        defer { own?.deallocate() }
        let dp = own ?? scratch
        for item in items {
            let b = item / s.heads, h = item % s.heads
            let base = qkv + b * t * 3 * c
            let dbase = dqkv + b * t * 3 * c
            let q = base + h * d, k = base + c + h * d, v = base + 2 * c + h * d
            let dq = dbase + h * d, dk = dbase + c + h * d, dv = dbase + 2 * c + h * d
            let p = probs + (b * s.heads + h) * t * t
            let dy = dout + b * t * c + h * d
            BLAS.sgemm(transB: true, m: t, n: t, k: d, a: dy, lda: c, b: v, ldb: 3 * c, c: dp, ldc: t)
            BLAS.sgemm(transA: true, m: t, n: d, k: t, a: p, lda: t, b: dy, ldb: c, beta: 1, c: dv, ldc: 3 * c)
            for row in 0..<t {
                causalSoftmaxBackwardRow(dp + row * t, probs: p + row * t, valid: row + 1, width: t, scale: scale)
            }
            BLAS.sgemm(m: t, n: d, k: t, a: dp, lda: t, b: k, ldb: 3 * c, beta: 1, c: dq, ldc: 3 * c)
            BLAS.sgemm(transA: true, m: t, n: d, k: t, a: dp, lda: t, b: q, ldb: 3 * c, beta: 1, c: dk, ldc: 3 * c)
        }
    }
}
