import XCTest

@testable import Kernels

/// The decoding kernels: few-row products that read the weights once, batched KV-cache attention,
/// and the thread split they run on.
final class DecodeKernelTests: XCTestCase {
    /// C = alpha·A·op(B) + beta·C in Float64, row-major, with each element's scale
    /// |alpha|·Σ|a·b| + |beta·c| (what a Float32 sum's rounding error is proportional to).
    func reference(
        transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: FloatBuffer, b: FloatBuffer, beta: Float, c: FloatBuffer
    ) -> [(value: Double, scale: Double)] {
        (0..<m * n).map { e in
            let i = e / n, j = e % n
            var s = 0.0, size = 0.0
            for p in 0..<k {
                let term = Double(a[i * k + p]) * Double(transB ? b[j * k + p] : b[p * n + j])
                s += term
                size += abs(term)
            }
            return (
                Double(alpha) * s + Double(beta) * Double(c[e]),
                abs(Double(alpha)) * size + abs(Double(beta) * Double(c[e]))
            )
        }
    }

    func testSkinnyProductsMatchAFloat64Reference() {
        var probe = Probe(seed: 5)
        // Shapes with 64-, 16- and 1-wide column tails, k beyond one 128 block and k % 16 ≠ 0.
        for (n, k) in [(1152, 384), (258, 384), (83, 300), (64, 16)] {
            for m in [1, 3, 4, 7, 8, 32] {
                for transB in [false, true] {
                    for (alpha, beta) in [(Float(1), Float(0)), (0.5, 1), (1, -2)] {
                        let a = probe.buffer(m * k), b = probe.buffer(n * k), c = probe.buffer(m * n)
                        let expected = reference(
                            transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, b: b, beta: beta, c: c)
                        SkinnyGEMM.run(
                            transB: transB, m: m, n: n, k: k, alpha: alpha, a: a.pointer, lda: k,
                            b: b.pointer, ldb: transB ? k : n, beta: beta, c: c.pointer, ldc: n)
                        let worst = (0..<m * n).map { abs(Double(c[$0]) - expected[$0].value) / expected[$0].scale }
                            .max()!
                        XCTAssertLessThan(
                            worst, 1e-6, "m \(m) n \(n) k \(k) transB \(transB) alpha \(alpha) beta \(beta)")
                    }
                }
            }
        }
    }

    /// Each row's result is bit-identical whatever the batch around it (M) and the thread count:
    /// sequences leaving the batch do not change the others' numbers.
    func testSkinnyRowsDoNotDependOnTheBatchOrThreads() {
        var probe = Probe(seed: 6)
        let n = 1152, k = 384, m = 13
        let threads = BLAS.threads
        defer { BLAS.setThreads(threads) }
        for transB in [false, true] {
            let a = probe.buffer(m * k), b = probe.buffer(n * k)
            var outputs: [[Float]] = []
            for t in [1, 2] {
                BLAS.setThreads(t)
                let whole = FloatBuffer(count: m * n)
                SkinnyGEMM.run(
                    transB: transB, m: m, n: n, k: k, alpha: 1, a: a.pointer, lda: k, b: b.pointer, ldb: transB ? k : n,
                    beta: 0, c: whole.pointer, ldc: n)
                outputs.append(Array(whole.buffer))
                for r in [0, 5, 12] {
                    let one = FloatBuffer(count: n)
                    SkinnyGEMM.run(
                        transB: transB, m: 1, n: n, k: k, alpha: 1, a: a.pointer + r * k, lda: k, b: b.pointer,
                        ldb: transB ? k : n, beta: 0, c: one.pointer, ldc: n)
                    XCTAssertEqual(
                        Array(one.buffer), Array(whole.buffer[(r * n)..<((r + 1) * n)]),
                        "row \(r), transB \(transB), \(t) threads")
                }
            }
            XCTAssertEqual(outputs[0], outputs[1], "1 vs 2 threads, transB \(transB)")
        }
    }

    func testParallelChunksCoverEveryItemOnce() {
        for count in [0, 1, 2, 7, 1000] {
            for n in 1...4 {
                let ranges = (0..<n).map { Parallel.chunk($0, of: n, count: count) }
                XCTAssertEqual(ranges.flatMap { Array($0) }, Array(0..<count))
            }
        }
        var seen = [Int](repeating: 0, count: 10_000)
        seen.withUnsafeMutableBufferPointer { seen in
            let p = seen.baseAddress!
            Parallel.forEach(10_000, costPerItem: 1000) { range in for i in range { p[i] += 1 } }
        }
        XCTAssertEqual(Set(seen), [1])
    }

    /// One call per layer for the whole batch, rows of different lengths, grouped-query heads:
    /// equal to softmax(q·Kᵀ/√d)·V per (row, head) in Float64.
    func testDecodeAttentionMatchesPerHeadSoftmax() {
        var probe = Probe(seed: 7)
        let heads = 4, kvHeads = 2, d = 24, group = heads / kvHeads, kw = kvHeads * d
        let lengths = [1, 5, 17, 40]
        let q = probe.buffer(lengths.count * heads * d)
        let keys = lengths.map { probe.buffer($0 * kw) }, values = lengths.map { probe.buffer($0 * kw) }
        let out = FloatBuffer(count: lengths.count * heads * d)
        decodeAttention(
            out: out.pointer, outStride: heads * d, q: q.pointer, qStride: heads * d,
            keys: keys.map { KVRows($0.pointer) }, values: values.map { KVRows($0.pointer) },
            lengths: lengths, shape: DecodeAttentionShape(heads: heads, kvHeads: kvHeads, headSize: d))
        for (r, n) in lengths.enumerated() {
            for h in 0..<heads {
                let g = h / group
                let scores = (0..<n).map { j in
                    (0..<d).reduce(0.0) {
                        $0 + Double(q[(r * heads + h) * d + $1]) * Double(keys[r][j * kw + g * d + $1])
                    } / Double(d).squareRoot()
                }
                let top = scores.max()!, e = scores.map { exp($0 - top) }, z = e.reduce(0, +)
                for x in 0..<d {
                    let expected = (0..<n).reduce(0.0) { $0 + e[$1] / z * Double(values[r][$1 * kw + g * d + x]) }
                    XCTAssertEqual(Double(out[(r * heads + h) * d + x]), expected, accuracy: 1e-5, "row \(r) head \(h)")
                }
            }
        }
    }
}
