import ArgumentParser
import Foundation
import Kernels
import Models

struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "sgemm GFLOP/s at a model's shapes and elementwise kernel speed (ns per element).")

    @Option(help: "Model shapes to measure, family/preset as in `bench model` (repeatable).")
    var preset: [String] = ["tiny", "small", "gpt2"]

    @Option(help: "Batch size of the shapes.")
    var batch: Int = 8

    @Option(help: "Tokens per sequence of the shapes.")
    var tokens: Int = 128

    func run() throws {
        log("bench kernels: \(BLAS.summary); bf16 products: \(BFloat16GEMM.summary)")
        let threads = BLAS.threads, core = BLAS.coreName
        // The CPU, the flags the decision used, the core chosen and why, and the build's target CPU.
        let cpu = CPUFeatures.current
        let used = ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16"].filter(
            cpu.flags.contains)
        printJSONLine([
            "case": "cpu", "model": cpu.modelName, "flags_used": used, "best_core": KernelChoice.best(for: cpu),
            "core": core,
            "why": FastPath.decision?.reason ?? "", "build_target_cpu": FastPath.buildTargetCPU, "threads": threads,
        ])
        for t in Set([1, threads]).sorted() {
            BLAS.setThreads(t)
            printJSONLine([
                "case": "sgemm_peak", "threads": t, "core": core,
                "gflops": rounded(Measure.sgemmPeak(shapes: [(1024, 1024, 1024), (2048, 768, 2304)]), 1),
            ])
        }
        BLAS.setThreads(threads)
        for name in preset {
            let c = try ModelFamilies.preset(qualified: name)
            let m = batch * tokens, C = c.channels, I = c.innerSize
            let shapes: [(String, Int, Int, Int, Bool, Bool)] = [
                ("qkv NN", m, C, 3 * C, false, false), ("qkv dx NT", m, 3 * C, C, false, true),
                ("qkv dW TN", C, m, 3 * C, true, false), ("mlp_up NN", m, C, I, false, false),
                ("mlp_down NN", m, I, C, false, false), ("lm_head NT", m, C, c.vocabSize, false, true),
                ("square 1024", 1024, 1024, 1024, false, false),
            ]
            for (label, mm, k, n, ta, tb) in shapes {
                let gflops = Measure.sgemmGFLOPs(m: mm, k: k, n: n, transA: ta, transB: tb)
                let bf16 = Measure.productGFLOPs(m: mm, k: k, n: n, transA: ta, transB: tb, bf16: true)
                printJSONLine([
                    "case": "sgemm", "preset": name, "op": label, "m": mm, "k": k, "n": n,
                    "gflops": rounded(gflops, 1), "bf16_gflops": rounded(bf16, 1), "threads": threads, "core": core,
                ])
            }
        }
        elementwise(threads: threads, core: core)
    }

    /// ns per element of the elementwise kernels on 8M floats (beyond L3, so memory-bound ones show it).
    func elementwise(threads: Int, core: String) {
        let n = 1 << 23
        var rng = RNG(seed: 2)
        let x = FloatBuffer(count: n), y = FloatBuffer(count: n), d = FloatBuffer(count: n)
        rng.fillNormal(x.buffer, std: 2)
        rng.fillNormal(d.buffer, std: 1)
        let rows = n / 768
        let w = FloatBuffer(count: 768), b = FloatBuffer(count: 768), mean = FloatBuffer(count: rows),
            rstd = FloatBuffer(count: rows)
        w.buffer.update(repeating: 1)
        let cases: [(String, () -> Void)] = [
            ("gelu_forward", { geluForward(out: y.pointer, x: x.pointer, count: n) }),
            ("gelu_backward", { geluBackward(dx: y.pointer, dout: d.pointer, x: x.pointer, count: n) }),
            (
                "softmax_rows_1024",
                {
                    y.copy(from: x)
                    for r in 0..<(n / 1024) { causalSoftmaxRow(y.pointer + r * 1024, valid: 1024, width: 1024) }
                }
            ),
            (
                "layernorm_forward_768",
                {
                    layerNormForward(
                        out: y.pointer, mean: mean.pointer, rstd: rstd.pointer, x: x.pointer,
                        weight: w.pointer, bias: b.pointer, rows: rows, channels: 768, eps: 1e-5)
                }
            ),
        ]
        for (label, body) in cases {
            let seconds = Measure.best(minSeconds: 0.3, body)
            printJSONLine([
                "case": "elementwise", "op": label, "ns_per_element": rounded(seconds / Double(n) * 1e9, 3),
                "threads": threads, "core": core,
            ])
        }
    }
}
