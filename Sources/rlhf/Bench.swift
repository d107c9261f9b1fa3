import ArgumentParser
import Foundation
import Kernels
import Models

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure speed; prints one JSON object per case (figures, never pass/fail).",
        subcommands: [
            BenchKernels.self, BenchModel.self, BenchAllReduce.self, BenchPPO.self, BenchDPO.self, BenchScale.self,
        ])
}

/// Timing helpers shared by the benchmarks.
enum Measure {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Best seconds per call of `body` over repeated runs lasting at least `minSeconds`
    /// (after one warm-up call). Best-of, because this machine is shared and noisy.
    static func best(minSeconds: Double, minRuns: Int = 3, _ body: () throws -> Void) rethrows -> Double {
        try body()
        var best = Double.infinity
        var runs = 0
        let start = now()
        while runs < minRuns || now() - start < minSeconds {
            let t0 = now()
            try body()
            best = min(best, now() - t0)
            runs += 1
        }
        return best
    }

    /// Peak resident set size of this process in MiB (ru_maxrss is in KiB on Linux).
    static func peakRSSMiB() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_maxrss) / 1024
    }

    /// GFLOP/s of C[M×N] = A[M×K]·op(B) on fresh random data: fp32 sgemm, or with `bf16` the
    /// product as the models issue it in precision bf16 (BFloat16GEMM: the activation A rounded from
    /// fp32 on every call, B a bf16 weight; for dW = Aᵀ·B both rounded).
    static func productGFLOPs(
        m: Int, k: Int, n: Int, transA: Bool = false, transB: Bool = false, bf16: Bool = false,
        minSeconds: Double = 0.3
    ) -> Double {
        var rng = RNG(seed: 1)
        let a = FloatBuffer(count: m * k), b = FloatBuffer(count: k * n), c = FloatBuffer(count: m * n)
        rng.fillNormal(a.buffer, std: 1)
        rng.fillNormal(b.buffer, std: 1)
        let b16 = BFloat16Buffer(rounding: b)
        let (lda, ldb) = (transA ? m : k, transB ? k : n)
        let seconds = best(minSeconds: minSeconds) {
            if !bf16 {
                BLAS.sgemm(
                    transA: transA, transB: transB, m: m, n: n, k: k, a: a.pointer, lda: lda, b: b.pointer, ldb: ldb,
                    c: c.pointer, ldc: n)
            } else if transA {
                BFloat16GEMM.gemm(
                    transA: true, transB: transB, m: m, n: n, k: k, a: a.pointer, lda: lda, b: b.pointer, ldb: ldb,
                    c: c.pointer, ldc: n)
            } else {
                BFloat16GEMM.gemm(
                    transB: transB, m: m, n: n, k: k, a: a.pointer, lda: lda, b: b16.pointer, ldb: ldb, c: c.pointer,
                    ldc: n)
            }
        }
        return 2 * Double(m) * Double(n) * Double(k) / seconds / 1e9
    }

    static func sgemmGFLOPs(
        m: Int, k: Int, n: Int, transA: Bool = false, transB: Bool = false, minSeconds: Double = 0.3
    )
        -> Double
    {
        productGFLOPs(m: m, k: k, n: n, transA: transA, transB: transB, minSeconds: minSeconds)
    }

    /// The practical peak of bf16 products (as `sgemmPeak`).
    static func bf16Peak(shapes: [(Int, Int, Int)]) -> Double {
        var peak = productGFLOPs(m: 1024, k: 1024, n: 1024, bf16: true)
        for (m, k, n) in shapes { peak = max(peak, productGFLOPs(m: m, k: k, n: n, bf16: true, minSeconds: 0.2)) }
        return peak
    }

    /// The practical sgemm peak: best of square 1024³ and the model's largest product shape.
    static func sgemmPeak(shapes: [(Int, Int, Int)]) -> Double {
        var peak = sgemmGFLOPs(m: 1024, k: 1024, n: 1024)
        for (m, k, n) in shapes { peak = max(peak, sgemmGFLOPs(m: m, k: k, n: n, minSeconds: 0.2)) }
        return peak
    }
}

func rounded(_ x: Double, _ digits: Int = 3) -> Double {
    let p = pow(10.0, Double(digits))
    return (x * p).rounded() / p
}
