/// One decoding step's attention for a whole batch in one call per layer: each row's single new
/// query against its own sequence's cached keys and values (lengths differ per row), all heads,
/// grouped-query aware (query head h reads key/value head h / (H/G)).
///
/// Per-(sequence, head) sgemm calls with m = 1 spent more time in OpenBLAS's call and packing
/// overhead than in arithmetic (issue 13); here each head is two passes over its cache rows with
/// 16-lane dot products and axpys, and rows × heads are split across the kernel threads.
///
/// Shapes: q [M, H·d] (row stride qStride), out [M, H·d] (row stride outStride); for row r the
/// keys and values are [lengths[r], G·d] at keys[r] / values[r] (row stride G·d; fp32 or bf16),
/// the newest position (this step's, already appended) last.
public struct DecodeAttentionShape: Sendable {
    public let heads: Int, kvHeads: Int, headSize: Int
    public init(heads: Int, kvHeads: Int, headSize: Int) {
        self.heads = heads
        self.kvHeads = kvHeads
        self.headSize = headSize
    }
    var kvWidth: Int { kvHeads * headSize }
}

public func decodeAttention(
    out: UnsafeMutablePointer<Float>, outStride: Int, q: UnsafePointer<Float>, qStride: Int,
    keys: [KVRows], values: [KVRows], lengths: [Int], shape s: DecodeAttentionShape
) {
    let rows = lengths.count, d = s.headSize, group = s.heads / s.kvHeads, kw = s.kvWidth
    let scale = 1 / Float(d).squareRoot()
    let longest = lengths.max() ?? 0
    // Work per (row, head) ≈ 4·length·d flops.
    Parallel.forEach(rows * s.heads, costPerItem: 4 * max(longest, 1) * d) { items in
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(longest, 1))
        let row = UnsafeMutablePointer<Float>.allocate(capacity: d)  // a bf16 cache row, expanded
        defer {
            scores.deallocate()
            row.deallocate()
        }
        for item in items {
            let r = item / s.heads, h = item % s.heads, g = h / group, n = lengths[r]
            let qh = q + r * qStride + h * d
            let o = out + r * outStride + h * d
            // scores[j] = scale · q_h · k_j (j < n); p = softmax(scores); o = Σ_j p_j v_j
            for j in 0..<n {
                scores[j] = scale * vectorDot(qh, keys[r].load(at: j * kw + g * d, count: d, scratch: row), d)
            }
            causalSoftmaxRow(scores, valid: n, width: n)
            o.update(repeating: 0, count: d)
            for j in 0..<n {
                vectorAddScaled(o, scores[j], values[r].load(at: j * kw + g * d, count: d, scratch: row), d)
            }
        }
    }
}
