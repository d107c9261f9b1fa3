/// GELU, tanh approximation (Hendrycks & Gimpel 2016, eq. after (1)); Hugging Face's "gelu_new",
/// the activation GPT-2 was trained with: gelu(x) = ½x(1 + tanh(√(2/π)(x + 0.044715x³))).
private let geluScale: Float = 0.797_884_560_802_865_4  // √(2/π)
private let geluCubic: Float = 0.044_715

/// out[i] = gelu(x[i]), n elements.
public func geluForward(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count n: Int) {
    Parallel.forEach(n, costPerItem: 20) { range in geluForwardSpan(out: out, x: x, range) }
}

@inline(__always)
private func geluForwardSpan(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, _ range: Range<Int>) {
    for i in range {
        let v = x[i]
        let u = geluScale * (v + geluCubic * v * v * v)
        out[i] = 0.5 * v * (1 + fastTanh(u))
    }
}

/// dx[i] += gelu'(x[i]) · dout[i]; gelu'(x) = ½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²).
public func geluBackward(
    dx: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, x: UnsafePointer<Float>, count n: Int
) {
    Parallel.forEach(n, costPerItem: 30) { range in geluBackwardSpan(dx: dx, dout: dout, x: x, range) }
}

@inline(__always)
private func geluBackwardSpan(
    dx: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, x: UnsafePointer<Float>, _ range: Range<Int>
) {
    for i in range {
        let v = x[i]
        let u = geluScale * (v + geluCubic * v * v * v)
        let t = fastTanh(u)
        let du = geluScale * (1 + 3 * geluCubic * v * v)
        let grad = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * du
        dx[i] += grad * dout[i]
    }
}
