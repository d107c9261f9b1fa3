/// Vectorisable exp and tanh. libm's expf/tanhf are opaque calls that stop auto-vectorisation and
/// cost ~12 ns/element here against ~0.3 ns for these (docs/platform.md §3).
///
/// exp follows Cephes `expf`: x = n·ln2 + r with |r| ≤ ln2/2, a degree-6 polynomial for e^r, and
/// 2^n built from exponent bits. n is read from the bits of x·log2e + 1.5·2^23 (the float's ulp
/// is 1 there), because a checked Float→Int conversion traps and blocks vectorisation.
/// Max relative error ≈ 2e-7 on [-87, 88]; inputs outside are clamped (exp(-87) ≈ 1.6e-38).
@inline(__always)
public func fastExp(_ x: Float) -> Float {
    let xc = Swift.min(Swift.max(x, -87.0), 88.0)
    let shifter: Float = 12_582_912.0  // 1.5 · 2^23
    let t = xc * 1.442_695_04 + shifter  // round(x·log2 e) lives in t's low mantissa bits
    let n = t - shifter
    // Cody–Waite: ln2 split into C1 (exact in few bits) + C2, so r keeps full precision.
    let r = (xc - n * 0.693_359_375) + n * 2.121_944_4e-4
    var p: Float = 1.987_569_15e-4
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 1.666_666_55e-1
    p = p * r + 5.000_000_12e-1
    let er = (p * r) * r + r + 1
    let exponentBits = (t.bitPattern &- 0x4B40_0000) &+ 127  // n + bias, n ∈ [-126, 127]
    return er * Float(bitPattern: exponentBits << 23)
}

/// tanh(x) = 1 − 2 / (e^{2x} + 1); exact limits ±1 for large |x| because fastExp clamps.
@inline(__always)
public func fastTanh(_ x: Float) -> Float {
    1 - 2 / (fastExp(2 * x) + 1)
}
