/// LayerNorm over the channel axis (Ba, Hinton et al. 2016), as GPT-2 uses it before each sublayer.
/// Shapes: x, out [M, C] with M = B·T rows; weight, bias [C]; mean, rstd [M] saved for backward.
/// Variance is the biased one (÷C), matching torch.nn.LayerNorm.
public func layerNormForward(
    out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
    x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
    rows: Int, channels c: Int, eps: Float
) {
    let invC = 1 / Float(c)
    Parallel.forEach(rows, costPerItem: 8 * c) { span in
        for r in span {
            let xr = x + r * c
            let m = vectorSum(xr, c) * invC
            // Second pass for the variance: two-pass is stable where E[x²]−E[x]² is not.
            var acc = SIMD16<Float>()
            var i = 0
            while i + 16 <= c {
                let d = load16(xr, i) - SIMD16(repeating: m)
                acc.addProduct(d, d)
                i += 16
            }
            var v = acc.sum()
            while i < c {
                let d = xr[i] - m
                v += d * d
                i += 1
            }
            let s = 1 / (v * invC + eps).squareRoot()
            let o = out + r * c
            for j in 0..<c { o[j] = (xr[j] - m) * s * weight[j] + bias[j] }
            mean[r] = m
            rstd[r] = s
        }
    }
}

/// Accumulates dx, dweight, dbias (+=), as in llm.c's layernorm_backward:
/// dx = rstd · (g − mean(g) − n̂ · mean(g ⊙ n̂)) with g = dout ⊙ weight, n̂ = (x − mean) · rstd.
public func layerNormBackward(
    dx: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>?, dbias: UnsafeMutablePointer<Float>?,
    dout: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
    rows: Int, channels c: Int, scratch: UnsafeMutablePointer<Float>
) {
    // dx row by row (rows split across threads, scratch [2C] per chunk: n̂ and g); then dweight
    // and dbias by column blocks, each summed over the rows in order, so the sums are the same
    // at every thread count.
    let invC = 1 / Float(c)
    Parallel.forEach(rows, costPerItem: 10 * c) { span in
        let own = span.lowerBound == 0 ? nil : UnsafeMutablePointer<Float>.allocate(capacity: 2 * c)
        defer { own?.deallocate() }
        let norm = own ?? scratch, g = norm + c
        for r in span {
            let xr = x + r * c, dr = dout + r * c, dxr = dx + r * c
            let m = mean[r], s = rstd[r]
            for j in 0..<c {
                norm[j] = (xr[j] - m) * s
                g[j] = dr[j] * weight[j]
            }
            let gMean = vectorSum(g, c) * invC
            let gNormMean = vectorDot(g, norm, c) * invC
            for j in 0..<c { dxr[j] += (g[j] - gMean - norm[j] * gNormMean) * s }
        }
    }
    guard dweight != nil || dbias != nil else { return }
    Parallel.forEach((c + 63) / 64, costPerItem: 4 * 64 * rows) { blocks in
        let cols = (blocks.lowerBound * 64)..<min(c, blocks.upperBound * 64)
        for r in 0..<rows {
            let xr = x + r * c, dr = dout + r * c, m = mean[r], s = rstd[r]
            if let dweight { for j in cols { dweight[j] = dweight[j].addingProduct(dr[j], (xr[j] - m) * s) } }
            if let dbias { for j in cols { dbias[j] += dr[j] } }
        }
    }
}
