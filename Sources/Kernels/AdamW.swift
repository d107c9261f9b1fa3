/// AdamW (Loshchilov & Hutter 2019) with decoupled weight decay, written to match torch.optim.AdamW
/// step for step: p ← p·(1 − lr·wd) − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε).
public struct AdamWHyperparameters: Sendable, Codable, Equatable {
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var eps: Float
    public var weightDecay: Float
    public init(
        learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
        weightDecay: Float = 0.01
    ) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
    }
}

/// One update of n parameters; `step` counts from 1. m, v [n] are the moment buffers.
public func adamWUpdate(
    params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>,
    m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count n: Int,
    step: Int, hyper h: AdamWHyperparameters, decay: Bool = true
) {
    // Parameters are independent: blocks of 1024 split across the kernel threads (the 16-lane
    // body and its scalar tail see the same elements as in one pass).
    Parallel.forEach((n + 1023) / 1024, costPerItem: 1024 * 12) { blocks in
        let lo = blocks.lowerBound * 1024, hi = min(n, blocks.upperBound * 1024)
        adamWSpan(
            params: params + lo, grads: grads + lo, m: m + lo, v: v + lo, count: hi - lo, step: step, hyper: h,
            decay: decay)
    }
}

private func adamWSpan(
    params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>,
    m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count n: Int,
    step: Int, hyper h: AdamWHyperparameters, decay: Bool
) {
    let bc1 = Float(1 - pow(Double(h.beta1), Double(step)))
    let bc2Sqrt = Float(1 - pow(Double(h.beta2), Double(step))).squareRoot()
    let stepSize = h.learningRate / bc1
    let shrink = decay ? 1 - h.learningRate * h.weightDecay : 1
    let b1 = h.beta1, b2 = h.beta2, eps = h.eps
    // Sixteen lanes by hand: the four buffers may alias as far as the compiler knows, so a plain
    // loop stays scalar (2.4 ns/parameter measured, against ~0.6 here).
    var i = 0
    let vb1 = SIMD16<Float>(repeating: b1), vb2 = SIMD16<Float>(repeating: b2)
    let c1 = SIMD16<Float>(repeating: 1 - b1), c2 = SIMD16<Float>(repeating: 1 - b2)
    let vShrink = SIMD16<Float>(repeating: shrink), vStep = SIMD16<Float>(repeating: stepSize)
    let vBias = SIMD16<Float>(repeating: 1 / bc2Sqrt), vEps = SIMD16<Float>(repeating: eps)
    while i + 16 <= n {
        let g = load16(grads, i)
        let mi = vb1 * load16(m, i) + c1 * g
        let vi = vb2 * load16(v, i) + c2 * g * g
        store16(m, i, mi)
        store16(v, i, vi)
        store16(params, i, load16(params, i) * vShrink - vStep * mi / (vi.squareRoot() * vBias + vEps))
        i += 16
    }
    while i < n {
        let g = grads[i]
        let mi = b1 * m[i] + (1 - b1) * g
        let vi = b2 * v[i] + (1 - b2) * g * g
        m[i] = mi
        v[i] = vi
        params[i] = params[i] * shrink - stepSize * mi / (vi.squareRoot() * (1 / bc2Sqrt) + eps)
        i += 1
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
