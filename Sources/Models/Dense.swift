import Kernels

/// A torch.nn.Linear layer (Llama-family projections): out[M, N] = x[M, K] · W[N, K]ᵀ (+ bias[N]),
/// plus an optional LoRA branch scale · (x·Aᵀ)·Bᵀ; the forward saves u = x·Aᵀ [M, r].
/// (GPT-2's Conv1D layers store W as [K, N]: `linearForward`.)
func denseForward(
    out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, weight: WeightMatrix,
    bias: UnsafePointer<Float>?,
    rows m: Int, input k: Int, output n: Int, lora: LoRABranch?
) {
    if let bias { for r in 0..<m { (out + r * n).update(from: bias, count: n) } }
    weightProduct(
        transB: true, m: m, n: n, k: k, x: x, lda: k, w: weight, ldb: k, beta: bias == nil ? 0 : 1, c: out, ldc: n)
    if let lora { loraForward(lora, like: weight, out: out, x: x, rows: m, input: k, output: n) }
}

/// Backward of `denseForward`. dx ← dout·W (or += when `accumulate`, for projections that read
/// the same input) [+ LoRA: scale·(dout·B)·A]; dWeight += doutᵀ·x and dBias += Σ_rows dout when
/// given; the LoRA branch as `loraBackward`. `loraScratch` holds [M, r].
func denseBackward(
    dx: UnsafeMutablePointer<Float>, accumulate: Bool, dWeight: UnsafeMutablePointer<Float>?,
    dBias: UnsafeMutablePointer<Float>?,
    dout: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: WeightMatrix,
    rows m: Int, input k: Int, output n: Int, lora: LoRABranch?, loraScratch: UnsafeMutablePointer<Float>
) {
    weightProduct(m: m, n: k, k: n, x: dout, lda: n, w: weight, ldb: k, beta: accumulate ? 1 : 0, c: dx, ldc: k)
    if let dWeight {
        activationProduct(
            like: weight, transA: true, m: n, n: k, k: m, a: dout, lda: n, b: x, ldb: k, beta: 1, c: dWeight, ldc: k)
    }
    if let dBias { biasBackward(dBias, dout, rows: m, n: n) }
    if let lora {
        loraBackward(
            lora, like: weight, dx: dx, dout: dout, x: x, rows: m, input: k, output: n, scratch: loraScratch)
    }
}
