/// Matrix products with few rows (decoding: one row per sequence still running), where OpenBLAS
/// spends more time packing the weight matrix than multiplying: its sgemm copies all of B into a
/// packed buffer on every call (sgemm_itcopy/oncopy were 23% of a batch-8 decode profile, the
/// kernel 42%), so the weights cross memory three times for a handful of rows. Here the weights
/// are read once, in column tiles that stay in cache while every row group passes over them.
///
/// Row-major, C[M×N] = alpha · A[M×K] · op(B) + beta · C, op(B) = B [K×N] or Bᵀ with B [N×K].
/// Register blocks: 4 rows × 64 columns (NN: sixteen 16-lane accumulators, the B row loaded
/// once per k for four rows) and 4 rows × 4 columns of dot products (NT). Each element's sum
/// runs over k in one fixed order, so results do not depend on M, the tiling or the threads.
enum SkinnyGEMM {
    /// Up to this many rows the weights-once kernels beat OpenBLAS (measured with
    /// `rlhf bench model`'s decode at batch 8 and 32; benchmarks/2026-12-01-emerald-rapids.md).
    static let maxRows = 32
    /// Below this M·N·K OpenBLAS 0.3.21 takes its own unpacked small-matrix kernels, which are
    /// as fast (the tiny preset's decode measured 22k tokens/s there against 17k here).
    static let minimumWork = 1 << 20

    static func run(
        transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        let tile = transB ? 4 : 64
        let tiles = (n + tile - 1) / tile
        Parallel.forEach(tiles, costPerItem: 2 * m * k * tile) { range in
            let cols = (range.lowerBound * tile)..<min(n, range.upperBound * tile)
            if transB {
                nt(rows: m, cols: cols, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            } else {
                nn(rows: m, cols: cols, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            }
        }
    }

    @inline(__always)
    static func finish(_ sum: Float, alpha: Float, beta: Float, into c: UnsafeMutablePointer<Float>) {
        c.pointee = beta == 0 ? alpha * sum : alpha * sum + beta * c.pointee
    }

    @inline(__always)
    static func finish(_ sum: SIMD16<Float>, alpha: Float, beta: Float, into c: UnsafeMutablePointer<Float>) {
        store16(c, 0, beta == 0 ? alpha * sum : alpha * sum + beta * load16(c, 0))
    }

    /// k is walked in blocks of this many: a 64-column tile's block of B (32 KB) stays in L1
    /// while every group of four rows passes over it.
    static let kBlock = 128

    /// C[rows, cols] for B [K×N]: per column tile (64 wide, then 16, then 1) and k block, every
    /// four-row group accumulates A[i, block] · B[block, tile]; the first block applies beta, the
    /// later ones add to C.
    static func nn(
        rows m: Int, cols: Range<Int>, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        var j = cols.lowerBound
        while j < cols.upperBound {
            let left = cols.upperBound - j, width = left >= 64 ? 64 : left >= 16 ? 16 : 1
            var p0 = 0
            while p0 < k {
                let block = p0..<min(k, p0 + kBlock), blockBeta = p0 == 0 ? beta : 1
                var r = 0
                while r < m {
                    let ar = a + r * lda, cr = c + r * ldc + j, bj = b + j
                    if width == 64 && m - r >= 4 {
                        nn4x64(block, alpha: alpha, a: ar, lda: lda, b: bj, ldb: ldb, beta: blockBeta, c: cr, ldc: ldc)
                        r += 4
                        continue
                    }
                    switch width {
                    case 64: nn1x64(block, alpha: alpha, a: ar, b: bj, ldb: ldb, beta: blockBeta, c: cr)
                    case 16:
                        var acc = SIMD16<Float>()
                        for p in block { acc.addProduct(SIMD16(repeating: ar[p]), load16(bj + p * ldb, 0)) }
                        finish(acc, alpha: alpha, beta: blockBeta, into: cr)
                    default:
                        var s: Float = 0
                        for p in block { s = s.addingProduct(ar[p], bj[p * ldb]) }
                        finish(s, alpha: alpha, beta: blockBeta, into: cr)
                    }
                    r += 1
                }
                p0 = block.upperBound
            }
            j += width
        }
    }

    /// Four rows × 64 columns: sixteen accumulators held in registers.
    @inline(__always)
    static func nn4x64(
        _ block: Range<Int>, alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        var c00 = SIMD16<Float>(), c01 = SIMD16<Float>(), c02 = SIMD16<Float>(), c03 = SIMD16<Float>()
        var c10 = SIMD16<Float>(), c11 = SIMD16<Float>(), c12 = SIMD16<Float>(), c13 = SIMD16<Float>()
        var c20 = SIMD16<Float>(), c21 = SIMD16<Float>(), c22 = SIMD16<Float>(), c23 = SIMD16<Float>()
        var c30 = SIMD16<Float>(), c31 = SIMD16<Float>(), c32 = SIMD16<Float>(), c33 = SIMD16<Float>()
        let a0 = a, a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda
        for p in block {
            let row = b + p * ldb
            let b0 = load16(row, 0), b1 = load16(row, 16), b2 = load16(row, 32), b3 = load16(row, 48)
            var x = SIMD16<Float>(repeating: a0[p])
            c00.addProduct(x, b0)
            c01.addProduct(x, b1)
            c02.addProduct(x, b2)
            c03.addProduct(x, b3)
            x = SIMD16<Float>(repeating: a1[p])
            c10.addProduct(x, b0)
            c11.addProduct(x, b1)
            c12.addProduct(x, b2)
            c13.addProduct(x, b3)
            x = SIMD16<Float>(repeating: a2[p])
            c20.addProduct(x, b0)
            c21.addProduct(x, b1)
            c22.addProduct(x, b2)
            c23.addProduct(x, b3)
            x = SIMD16<Float>(repeating: a3[p])
            c30.addProduct(x, b0)
            c31.addProduct(x, b1)
            c32.addProduct(x, b2)
            c33.addProduct(x, b3)
        }
        // Written out, not looped over arrays: an array literal here allocated on every tile.
        store64(c00, c01, c02, c03, alpha: alpha, beta: beta, into: c)
        store64(c10, c11, c12, c13, alpha: alpha, beta: beta, into: c + ldc)
        store64(c20, c21, c22, c23, alpha: alpha, beta: beta, into: c + 2 * ldc)
        store64(c30, c31, c32, c33, alpha: alpha, beta: beta, into: c + 3 * ldc)
    }

    @inline(__always)
    static func store64(
        _ v0: SIMD16<Float>, _ v1: SIMD16<Float>, _ v2: SIMD16<Float>, _ v3: SIMD16<Float>,
        alpha: Float, beta: Float, into c: UnsafeMutablePointer<Float>
    ) {
        finish(v0, alpha: alpha, beta: beta, into: c)
        finish(v1, alpha: alpha, beta: beta, into: c + 16)
        finish(v2, alpha: alpha, beta: beta, into: c + 32)
        finish(v3, alpha: alpha, beta: beta, into: c + 48)
    }

    @inline(__always)
    static func nn1x64(
        _ block: Range<Int>, alpha: Float, a: UnsafePointer<Float>, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>
    ) {
        var c0 = SIMD16<Float>(), c1 = SIMD16<Float>(), c2 = SIMD16<Float>(), c3 = SIMD16<Float>()
        for p in block {
            let row = b + p * ldb, x = SIMD16<Float>(repeating: a[p])
            c0.addProduct(x, load16(row, 0))
            c1.addProduct(x, load16(row, 16))
            c2.addProduct(x, load16(row, 32))
            c3.addProduct(x, load16(row, 48))
        }
        store64(c0, c1, c2, c3, alpha: alpha, beta: beta, into: c)
    }

    /// C[rows, cols] for B [N×K]: dot products of A's rows with B's rows, four by four; the four
    /// B rows (4·K floats) stay in L1 while every row group of A passes over them.
    static func nt(
        rows m: Int, cols: Range<Int>, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        var j = cols.lowerBound
        while j < cols.upperBound {
            let width = min(4, cols.upperBound - j)
            var r = 0
            while r < m {
                if width == 4 && m - r >= 4 {
                    nt4x4(
                        k: k, alpha: alpha, a: a + r * lda, lda: lda, b: b + j * ldb, ldb: ldb, beta: beta,
                        c: c + r * ldc + j, ldc: ldc)
                    r += 4
                    continue
                }
                for v in 0..<width {
                    finish(
                        vectorDot(a + r * lda, b + (j + v) * ldb, k), alpha: alpha, beta: beta,
                        into: c + r * ldc + j + v)
                }
                r += 1
            }
            j += width
        }
    }

    /// Four rows of A against four rows of B: sixteen 16-lane partial dot products, then sums.
    /// Same per-element order as vectorDot (16 lanes, then the k % 16 tail), so the edge paths agree.
    @inline(__always)
    static func nt4x4(
        k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        var s00 = SIMD16<Float>(), s01 = SIMD16<Float>(), s02 = SIMD16<Float>(), s03 = SIMD16<Float>()
        var s10 = SIMD16<Float>(), s11 = SIMD16<Float>(), s12 = SIMD16<Float>(), s13 = SIMD16<Float>()
        var s20 = SIMD16<Float>(), s21 = SIMD16<Float>(), s22 = SIMD16<Float>(), s23 = SIMD16<Float>()
        var s30 = SIMD16<Float>(), s31 = SIMD16<Float>(), s32 = SIMD16<Float>(), s33 = SIMD16<Float>()
        let b0 = b, b1 = b + ldb, b2 = b + 2 * ldb, b3 = b + 3 * ldb
        var p = 0
        while p + 16 <= k {
            let w0 = load16(b0, p), w1 = load16(b1, p), w2 = load16(b2, p), w3 = load16(b3, p)
            var x = load16(a, p)
            s00.addProduct(x, w0)
            s01.addProduct(x, w1)
            s02.addProduct(x, w2)
            s03.addProduct(x, w3)
            x = load16(a + lda, p)
            s10.addProduct(x, w0)
            s11.addProduct(x, w1)
            s12.addProduct(x, w2)
            s13.addProduct(x, w3)
            x = load16(a + 2 * lda, p)
            s20.addProduct(x, w0)
            s21.addProduct(x, w1)
            s22.addProduct(x, w2)
            s23.addProduct(x, w3)
            x = load16(a + 3 * lda, p)
            s30.addProduct(x, w0)
            s31.addProduct(x, w1)
            s32.addProduct(x, w2)
            s33.addProduct(x, w3)
            p += 16
        }
        // Written out, not looped over arrays: an array literal here allocated on every block.
        let tail = p
        @inline(__always) func store(_ sum: SIMD16<Float>, _ i: Int, _ v: Int) {
            var s = sum.sum()
            for q in tail..<k { s += a[i * lda + q] * b[v * ldb + q] }
            finish(s, alpha: alpha, beta: beta, into: c + i * ldc + v)
        }
        store(s00, 0, 0)
        store(s01, 0, 1)
        store(s02, 0, 2)
        store(s03, 0, 3)
        store(s10, 1, 0)
        store(s11, 1, 1)
        store(s12, 1, 2)
        store(s13, 1, 3)
        store(s20, 2, 0)
        store(s21, 2, 1)
        store(s22, 2, 2)
        store(s23, 2, 3)
        store(s30, 3, 0)
        store(s31, 3, 1)
        store(s32, 3, 2)
        store(s33, 3, 3)
    }
}
