import Foundation
import XCTest

@testable import Kernels

/// bf16 rounding, the bf16 matmul against fp32 sgemm of the same rounded inputs, and the
/// precision decision on flag sets recorded from real machines.
final class BFloat16Tests: XCTestCase {
    func testRoundingIsToNearestTiesToEven() {
        XCTAssertEqual(BFloat16.bits(1), 0x3F80)
        XCTAssertEqual(BFloat16.bits(-2), 0xC000)
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: the even one (1) wins; 1 + 3·2⁻⁸ goes up to 1 + 2⁻⁶.
        XCTAssertEqual(BFloat16.bits(1 + 0x1p-8), 0x3F80)
        XCTAssertEqual(BFloat16.bits(1 + 3 * 0x1p-8), 0x3F82)
        XCTAssertEqual(BFloat16.bits(1 + 0x1p-8 + 0x1p-20), 0x3F81)  // above the tie: up
        XCTAssertEqual(BFloat16.bits(.infinity), 0x7F80)
        XCTAssertEqual(BFloat16.bits(.greatestFiniteMagnitude), 0x7F80)  // rounds past the largest bf16
        XCTAssertTrue(BFloat16.float(BFloat16.bits(Float(bitPattern: 0x7F80_0001))).isNaN)
        XCTAssertEqual(BFloat16.float(0x4049), 3.140625)
        var rng = RNG(seed: 5)
        for _ in 0..<1000 {
            let x = rng.normal() * 100
            let r = BFloat16.rounded(x)
            XCTAssertLessThanOrEqual(abs(r - x), abs(x) * 0x1p-8, "\(x) → \(r)")
        }
    }

    /// Shapes as the models issue them: plain, transposed A or B, strided, alpha and beta.
    static let shapes: [(m: Int, n: Int, k: Int, transA: Bool, transB: Bool, alpha: Float, beta: Float)] = [
        (37, 53, 64, false, true, 1, 0), (64, 48, 96, false, false, 1, 1), (40, 24, 33, true, false, 1, 1),
        (8, 300, 72, false, true, 0.5, 0), (1, 129, 64, false, true, 1, 1), (96, 64, 128, true, true, 2, 0.5),
    ]

    /// oneDNN's bf16 products equal fp32 sgemm of the bf16-rounded inputs up to fp32 summation
    /// order (products of two bf16 values are exact in fp32).
    func testProductsMatchFP32OnRoundedInputs() {
        var probe = Probe(seed: 11)
        for s in Self.shapes {
            let lda = (s.transA ? s.m : s.k) + 3, ldb = (s.transB ? s.k : s.n) + 1, ldc = s.n + 2
            let a = probe.buffer((s.transA ? s.k : s.m) * lda), b = probe.buffer((s.transB ? s.n : s.k) * ldb)
            let c0 = probe.buffer(s.m * ldc)
            let a16 = BFloat16Buffer(rounding: a), b16 = BFloat16Buffer(rounding: b)
            let aRounded = FloatBuffer(a.array.map(BFloat16.rounded)),
                bRounded = FloatBuffer(b.array.map(BFloat16.rounded))
            let expected = c0.clone(), viaFloat = c0.clone(), viaBits = c0.clone(), viaBoth = c0.clone()
            BLAS.sgemm(
                transA: s.transA, transB: s.transB, m: s.m, n: s.n, k: s.k, alpha: s.alpha, a: aRounded.pointer,
                lda: lda, b: bRounded.pointer, ldb: ldb, beta: s.beta, c: expected.pointer, ldc: ldc)
            BFloat16GEMM.gemm(
                transA: s.transA, transB: s.transB, m: s.m, n: s.n, k: s.k, alpha: s.alpha, a: a16.pointer, lda: lda,
                b: b16.pointer, ldb: ldb, beta: s.beta, c: viaBits.pointer, ldc: ldc)
            BFloat16GEMM.gemm(
                transA: s.transA, transB: s.transB, m: s.m, n: s.n, k: s.k, alpha: s.alpha, a: a.pointer, lda: lda,
                b: b16.pointer, ldb: ldb, beta: s.beta, c: viaFloat.pointer, ldc: ldc)
            BFloat16GEMM.gemm(
                transA: s.transA, transB: s.transB, m: s.m, n: s.n, k: s.k, alpha: s.alpha, a: a.pointer, lda: lda,
                b: b.pointer, ldb: ldb, beta: s.beta, c: viaBoth.pointer, ldc: ldc)
            for i in 0..<s.m {
                for j in 0..<ldc {
                    let index = i * ldc + j
                    guard j < s.n else {  // outside the product: untouched
                        XCTAssertEqual(viaBits[index], c0[index])
                        continue
                    }
                    let tolerance = 1e-5 * Float(s.k) * abs(s.alpha) + 1e-5
                    XCTAssertEqual(viaBits[index], expected[index], accuracy: tolerance, "\(s) at \(i),\(j)")
                    XCTAssertEqual(viaFloat[index].bitPattern, viaBits[index].bitPattern, "\(s) at \(i),\(j)")
                    XCTAssertEqual(viaBoth[index].bitPattern, viaBits[index].bitPattern, "\(s) at \(i),\(j)")
                }
            }
        }
    }

    /// The same product twice gives the same bits (a primitive is reused from the cache).
    func testProductsRepeatBitForBit() {
        var probe = Probe(seed: 12)
        let a = probe.buffer(256 * 576), b = BFloat16Buffer(rounding: probe.buffer(576 * 576))
        let first = FloatBuffer(count: 256 * 576), second = FloatBuffer(count: 256 * 576)
        for c in [first, second] {
            BFloat16GEMM.gemm(
                transB: true, m: 256, n: 576, k: 576, a: a.pointer, lda: 576, b: b.pointer, ldb: 576, c: c.pointer,
                ldc: 576)
        }
        XCTAssertEqual(first.array.map(\.bitPattern), second.array.map(\.bitPattern))
        XCTAssertNotEqual(first[0], 0)
    }

    /// On this machine's CPU the engine is oneDNN when the CPU has AVX-512 (oneDNN 2.6's bf16
    /// matmul needs it), else emulated; either way the products above hold.
    func testEngineFollowsTheCPU() {
        let avx512 = CPUFeatures.current.flags.contains("avx512bw") && CPUFeatures.current.flags.contains("avx512vl")
        if avx512 { XCTAssertEqual(BFloat16GEMM.engine, .oneDNN, BFloat16GEMM.summary) }
        XCTAssertTrue(BFloat16GEMM.summary.contains("oneDNN 2."), BFloat16GEMM.summary)
    }

    static let machines: [(name: String, flags: String, auto: Precision)] = [
        ("AMD EPYC Zen 5", KernelChoiceTests.avx512 + " avx512_bf16 avx512_vnni avx512vbmi", .bf16),
        ("AMD EPYC Zen 4", KernelChoiceTests.avx512 + " avx512_bf16 avx512_vnni", .bf16),
        ("Intel Xeon Emerald Rapids", KernelChoiceTests.avx512 + " avx512_bf16 avx512_fp16 amx_tile amx_bf16", .bf16),
        ("Intel Xeon Skylake-SP", KernelChoiceTests.avx512, .fp32),
        ("AMD EPYC Zen 3", KernelChoiceTests.avx2, .fp32),
    ]

    func testAutoPrecisionFollowsRecordedCPUFlags() {
        for machine in Self.machines {
            let cpu = CPUFeatures(flags: Set(machine.flags.split(separator: " ").map(String.init)))
            let auto = PrecisionSetting.auto.decide(cpu: cpu)
            XCTAssertEqual(auto.precision, machine.auto, machine.name)
            XCTAssertTrue(auto.reason.hasPrefix("precision auto → \(machine.auto.rawValue)"), auto.reason)
            XCTAssertEqual(PrecisionSetting.fp32.decide(cpu: cpu).precision, .fp32)
            let forced = PrecisionSetting.bf16.decide(cpu: cpu)
            XCTAssertEqual(forced.precision, .bf16)
            XCTAssertEqual(forced.reason.contains("slower than fp32"), machine.auto == .fp32, forced.reason)
        }
        let emerald = PrecisionSetting.auto.decide(cpu: CPUFeatures(flags: ["avx512_bf16", "amx_bf16"]))
        XCTAssertEqual(emerald.reason, "precision auto → bf16: the CPU has amx_bf16")
    }

    /// The equalities bf16 runs rely on (docs/architecture.md §12): a row of a product does not depend on how
    /// many rows the call has (ranks hold different shares; decoding feeds one row per sequence),
    /// and neither a row nor a weight gradient depends on the thread count. Shapes of the smollm2
    /// layers and small ones; oneDNN splits these products over rows and columns, never over K.
    func testRowsAndThreadCountsDoNotChangeTheBits() {
        var probe = Probe(seed: 13)
        let threads = BLAS.threads
        defer { BLAS.setThreads(threads) }
        for (k, n) in [(576, 576), (576, 1536), (1536, 576), (64, 64), (16, 23)] {
            let a = probe.buffer(1024 * k), b = BFloat16Buffer(rounding: probe.buffer(k * n)),
                d = probe.buffer(1024 * n)
            func product(rows m: Int, threads: Int) -> [UInt32] {
                let c = FloatBuffer(count: m * n)
                BLAS.setThreads(threads)
                BFloat16GEMM.gemm(
                    transB: true, m: m, n: n, k: k, a: a.pointer, lda: k, b: b.pointer, ldb: k, c: c.pointer, ldc: n)
                return c.array.map(\.bitPattern)
            }
            func weightGradient(rows: Int, threads: Int) -> [UInt32] {
                let g = FloatBuffer(count: k * n)
                BLAS.setThreads(threads)
                BFloat16GEMM.gemm(
                    transA: true, m: k, n: n, k: rows, a: a.pointer, lda: k, b: d.pointer, ldb: n, beta: 1,
                    c: g.pointer, ldc: n)
                return g.array.map(\.bitPattern)
            }
            let full = product(rows: 1024, threads: 1)
            for m in [1, 8, 13, 128] {
                XCTAssertEqual(Array(full.prefix(m * n)), product(rows: m, threads: 1), "k \(k) n \(n): \(m) rows")
                XCTAssertEqual(Array(full.prefix(m * n)), product(rows: m, threads: 2), "k \(k) n \(n): \(m) rows")
            }
            XCTAssertEqual(full, product(rows: 1024, threads: 2), "k \(k) n \(n): 2 threads")
            for rows in [1024, 96, 8] {
                XCTAssertEqual(
                    weightGradient(rows: rows, threads: 1), weightGradient(rows: rows, threads: 2),
                    "k \(k) n \(n): weight gradient over \(rows) rows")
            }
        }
    }

    /// A bf16 KV cache holds half the bytes, and decoding attention over it equals attention over
    /// fp32 rows that hold the same (bf16-rounded) keys and values, bit for bit.
    func testBF16CacheRowsAttendAsTheirRoundedValues() {
        var probe = Probe(seed: 14)
        let shape = DecodeAttentionShape(heads: 4, kvHeads: 2, headSize: 16), kw = 32, lengths = [5, 9, 1]
        let q = probe.buffer(lengths.count * 4 * 16)
        let keys = lengths.map { probe.buffer($0 * kw) }, values = lengths.map { probe.buffer($0 * kw) }
        for buffer in keys + values {
            BFloat16.round(buffer.pointer, rows: 1, width: buffer.count, stride: buffer.count)
        }
        let stored = lengths.indices.map { i -> (KVCacheStorage, KVCacheStorage) in
            let k = KVCacheStorage(count: lengths[i] * kw, precision: .bf16)
            let v = KVCacheStorage(count: lengths[i] * kw, precision: .bf16)
            k.rows(at: 0).store(keys[i].pointer, count: lengths[i] * kw)
            v.rows(at: 0).store(values[i].pointer, count: lengths[i] * kw)
            return (k, v)
        }
        XCTAssertEqual(KVCacheStorage.bytes(.bf16) * 2, KVCacheStorage.bytes(.fp32))
        let exact = FloatBuffer(count: lengths.count * 64), halved = FloatBuffer(count: lengths.count * 64)
        withExtendedLifetime((q, keys, values, stored)) {  // the rows are raw pointers into these
            decodeAttention(
                out: exact.pointer, outStride: 64, q: q.pointer, qStride: 64, keys: keys.map { KVRows($0.pointer) },
                values: values.map { KVRows($0.pointer) }, lengths: lengths, shape: shape)
            decodeAttention(
                out: halved.pointer, outStride: 64, q: q.pointer, qStride: 64, keys: stored.map { $0.0.rows(at: 0) },
                values: stored.map { $0.1.rows(at: 0) }, lengths: lengths, shape: shape)
        }
        XCTAssertEqual(exact.array.map(\.bitPattern), halved.array.map(\.bitPattern))
        XCTAssertNotEqual(exact[0], 0)
    }
}
