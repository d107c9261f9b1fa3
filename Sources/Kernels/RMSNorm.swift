/// RMSNorm over the channel axis (Zhang & Sennrich 2019), as Llama, Qwen2 and Mistral use it
/// before each sublayer: out = x · rstd · weight, rstd = 1/√(mean(x²) + eps), in fp32 as
/// transformers' LlamaRMSNorm computes it. No mean is subtracted and there is no bias.
/// Shapes: x, out [M, C]; weight [C]; rstd [M] saved for backward.
public func rmsNormForward(
    out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
    x: UnsafePointer<Float>, weight: UnsafePointer<Float>, rows: Int, channels c: Int, eps: Float
) {
    Parallel.forEach(rows, costPerItem: 5 * c) { span in
        for r in span {
            let xr = x + r * c, o = out + r * c
            let s = 1 / (vectorDot(xr, xr, c) / Float(c) + eps).squareRoot()
            for j in 0..<c { o[j] = xr[j] * s * weight[j] }
            rstd[r] = s
        }
    }
}

/// Accumulates dx and dweight (+=). With g = dout ⊙ weight and n̂ = x · rstd:
/// dx = rstd · (g − n̂ · mean(g ⊙ n̂)), dweight = Σ_rows dout ⊙ n̂.
public func rmsNormBackward(
    dx: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>?,
    dout: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
    rows: Int, channels c: Int, scratch: UnsafeMutablePointer<Float>
) {
    // dx row by row (rows split across threads, scratch [2C] per chunk: n̂ and g); then dweight
    // by column blocks summed over the rows in order: the same sums at every thread count.
    let invC = 1 / Float(c)
    Parallel.forEach(rows, costPerItem: 8 * c) { span in
        let own = span.lowerBound == 0 ? nil : UnsafeMutablePointer<Float>.allocate(capacity: 2 * c)
        defer { own?.deallocate() }
        let norm = own ?? scratch, g = norm + c
        for r in span {
            let xr = x + r * c, dr = dout + r * c, dxr = dx + r * c, s = rstd[r]
            for j in 0..<c {
                norm[j] = xr[j] * s
                g[j] = dr[j] * weight[j]
            }
            let gNormMean = vectorDot(g, norm, c) * invC
            for j in 0..<c { dxr[j] += (g[j] - norm[j] * gNormMean) * s }
        }
    }
    guard let dweight else { return }
    Parallel.forEach((c + 63) / 64, costPerItem: 3 * 64 * rows) { blocks in
        let cols = (blocks.lowerBound * 64)..<min(c, blocks.upperBound * 64)
        for r in 0..<rows {
            let xr = x + r * c, dr = dout + r * c, s = rstd[r]
            for j in cols { dweight[j] = dweight[j].addingProduct(dr[j], xr[j] * s) }
        }
    }
}
