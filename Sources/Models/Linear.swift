import Kernels

/// A Conv1D-layout linear layer (HF GPT-2): out[M, N] = x[M, K] · W[K, N] + bias[N], plus an
/// optional LoRA branch scale · (x·Aᵀ)·Bᵀ. The forward saves u = x·Aᵀ [M, r] for the backward.
func linearForward(
    out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
    weight: WeightMatrix, bias: UnsafePointer<Float>,
    rows m: Int, input k: Int, output n: Int, lora: LoRABranch?
) {
    // Broadcast the bias first, then accumulate the product into it (beta = 1): one pass fewer.
    for r in 0..<m { (out + r * n).update(from: bias, count: n) }
    weightProduct(m: m, n: n, k: k, x: x, lda: k, w: weight, ldb: n, beta: 1, c: out, ldc: n)
    if let lora { loraForward(lora, like: weight, out: out, x: x, rows: m, input: k, output: n) }
}

/// Backward of `linearForward`.
/// dx ← dout·Wᵀ (overwritten, not accumulated) [+ LoRA: scale·(dout·B)·A];
/// dWeight += xᵀ·dout and dBias += Σ_rows dout when given (trainable trunk only);
/// LoRA: dB += scale·doutᵀ·u, dA += (scale·dout·B)ᵀ·x. `loraScratch` holds [M, r].
func linearBackward(
    dx: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>?, dBias: UnsafeMutablePointer<Float>?,
    dout: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: WeightMatrix,
    rows m: Int, input k: Int, output n: Int, lora: LoRABranch?, loraScratch: UnsafeMutablePointer<Float>
) {
    if let dx {
        weightProduct(transB: true, m: m, n: k, k: n, x: dout, lda: n, w: weight, ldb: n, c: dx, ldc: k)
    }
    if let dWeight {
        activationProduct(
            like: weight, transA: true, m: k, n: n, k: m, a: x, lda: k, b: dout, ldb: n, beta: 1, c: dWeight, ldc: n)
    }
    if let dBias { biasBackward(dBias, dout, rows: m, n: n) }
    if let lora {
        loraBackward(
            lora, like: weight, dx: dx, dout: dout, x: x, rows: m, input: k, output: n, scratch: loraScratch)
    }
}

/// The LoRA branch's forward, the same for Conv1D and nn.Linear layers (A [r, in], B [out, r]):
/// u = x·Aᵀ [M, r], out += scale·u·Bᵀ; in the weight's precision, as autocast runs PEFT's LoRA layers.
func loraForward(
    _ lora: LoRABranch, like weight: WeightMatrix, out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
    rows m: Int, input k: Int, output n: Int
) {
    activationProduct(
        like: weight, transB: true, m: m, n: lora.rank, k: k, a: x, lda: k, b: lora.a, ldb: k, c: lora.u,
        ldc: lora.rank)
    activationProduct(
        like: weight, transB: true, m: m, n: n, k: lora.rank, alpha: lora.scale, a: lora.u, lda: lora.rank,
        b: lora.b, ldb: lora.rank, beta: 1, c: out, ldc: n)
}

/// The LoRA branch's backward, the same for Conv1D and nn.Linear layers (A [r, in], B [out, r]):
/// dB += scale·doutᵀ·u, dA += (scale·dout·B)ᵀ·x, dx += (scale·dout·B)·A. `scratch` holds [M, r].
func loraBackward(
    _ lora: LoRABranch, like w: WeightMatrix, dx: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
    x: UnsafePointer<Float>,
    rows m: Int, input k: Int, output n: Int, scratch: UnsafeMutablePointer<Float>
) {
    let r = lora.rank
    if let gradB = lora.gradB {
        activationProduct(
            like: w,
            transA: true, m: n, n: r, k: m, alpha: lora.scale, a: dout, lda: n, b: lora.u, ldb: r, beta: 1, c: gradB,
            ldc: r)
    }
    guard dx != nil || lora.gradA != nil else { return }
    let du = scratch  // [M, r] = scale · dout · B
    activationProduct(
        like: w, m: m, n: r, k: n, alpha: lora.scale, a: dout, lda: n, b: lora.b, ldb: r, c: du, ldc: r)
    if let gradA = lora.gradA {
        activationProduct(
            like: w, transA: true, m: r, n: k, k: m, a: du, lda: r, b: x, ldb: k, beta: 1, c: gradA, ldc: k)
    }
    if let dx {
        activationProduct(
            like: w, m: m, n: k, k: r, a: du, lda: r, b: lora.a, ldb: k, beta: 1, c: dx, ldc: k)
    }
}
