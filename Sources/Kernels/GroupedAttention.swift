/// Causal self-attention with grouped-query heads (Ainslie et al. 2023): H query heads share
/// G key/value heads, query head h reading K/V head h / (H/G). q, k and v are separate buffers
/// (Llama's q_proj, k_proj, v_proj outputs); per (batch, head) S = q·kᵀ/√d, P = causal
/// softmax(S), y = P·v, every product in cblas_sgemm.
///
/// Shapes: q [B, T, H·d], k and v [B, T, G·d], probs [B, H, T, T] saved for the backward,
/// out [B, T, H·d].
public struct GroupedAttentionShape: Sendable {
    public let batch: Int, tokens: Int, heads: Int, kvHeads: Int, headSize: Int
    public init(batch: Int, tokens: Int, heads: Int, kvHeads: Int, headSize: Int) {
        precondition(
            kvHeads > 0 && heads % kvHeads == 0,
            "attention: \(heads) query heads do not share \(kvHeads) key/value heads evenly")
        self.batch = batch
        self.tokens = tokens
        self.heads = heads
        self.kvHeads = kvHeads
        self.headSize = headSize
    }
    var queryWidth: Int { heads * headSize }
    var kvWidth: Int { kvHeads * headSize }
    /// The key/value head query head h reads.
    func kvHead(_ h: Int) -> Int { h / (heads / kvHeads) }
}

public func groupedAttentionForward(
    out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
    q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, shape s: GroupedAttentionShape
) {
    let t = s.tokens, d = s.headSize, qw = s.queryWidth, kw = s.kvWidth
    let scale = 1 / Float(d).squareRoot()
    // (batch, head) pairs are independent: split across the kernel threads.
    Parallel.forEach(s.batch * s.heads, costPerItem: 4 * t * t * d) { items in
        for item in items {
            let b = item / s.heads, h = item % s.heads, g = s.kvHead(h)
            let qh = q + b * t * qw + h * d, kh = k + b * t * kw + g * d, vh = v + b * t * kw + g * d
            let p = probs + (b * s.heads + h) * t * t
            BLAS.sgemm(transB: true, m: t, n: t, k: d, alpha: scale, a: qh, lda: qw, b: kh, ldb: kw, c: p, ldc: t)
            for row in 0..<t { causalSoftmaxRow(p + row * t, valid: row + 1, width: t) }
            BLAS.sgemm(m: t, n: d, k: t, a: p, lda: t, b: vh, ldb: kw, c: out + b * t * qw + h * d, ldc: qw)
        }
    }
}

/// Accumulates (+=) into dq [B, T, H·d], dk and dv [B, T, G·d] given dout [B, T, H·d]; a
/// key/value head gathers the gradients of every query head that reads it.
/// dP = dy·vᵀ, dv = Pᵀ·dy, dS = P ⊙ (dP − rowsum(P ⊙ dP)) · scale, dq = dS·k, dk = dSᵀ·q.
/// scratch holds T·T floats.
public func groupedAttentionBackward(
    dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
    dout: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
    probs: UnsafePointer<Float>, shape s: GroupedAttentionShape, scratch: UnsafeMutablePointer<Float>
) {
    let t = s.tokens, d = s.headSize, qw = s.queryWidth, kw = s.kvWidth
    let scale = 1 / Float(d).squareRoot()
    // Split by (batch, key/value head): the heads sharing one key/value head add into the same
    // dk and dv, so each such group stays in one chunk, its heads in order (the same sums at
    // every thread count). Each chunk has its own T×T scratch.
    let group = s.heads / s.kvHeads
    Parallel.forEach(s.batch * s.kvHeads, costPerItem: 8 * t * t * d * group) { items in
        let own = items.lowerBound == 0 ? nil : UnsafeMutablePointer<Float>.allocate(capacity: t * t)
        defer { own?.deallocate() }
        let dp = own ?? scratch
        for item in items {
            for h in (item % s.kvHeads * group)..<((item % s.kvHeads + 1) * group) {
                let b = item / s.kvHeads, g = s.kvHead(h)
                let qh = q + b * t * qw + h * d, kh = k + b * t * kw + g * d, vh = v + b * t * kw + g * d
                let dqh = dq + b * t * qw + h * d, dkh = dk + b * t * kw + g * d, dvh = dv + b * t * kw + g * d
                let p = probs + (b * s.heads + h) * t * t
                let dy = dout + b * t * qw + h * d
                BLAS.sgemm(transB: true, m: t, n: t, k: d, a: dy, lda: qw, b: vh, ldb: kw, c: dp, ldc: t)
                BLAS.sgemm(transA: true, m: t, n: d, k: t, a: p, lda: t, b: dy, ldb: qw, beta: 1, c: dvh, ldc: kw)
                for row in 0..<t {
                    causalSoftmaxBackwardRow(dp + row * t, probs: p + row * t, valid: row + 1, width: t, scale: scale)
                }
                BLAS.sgemm(m: t, n: d, k: t, a: dp, lda: t, b: kh, ldb: kw, beta: 1, c: dqh, ldc: qw)
                BLAS.sgemm(transA: true, m: t, n: d, k: t, a: dp, lda: t, b: qh, ldb: qw, beta: 1, c: dkh, ldc: kw)
            }
        }
    }
}
