/// Reductions with explicit SIMD accumulators. Swift never reassociates floating-point sums, so a
/// plain `s += x[i]` loop stays scalar; sixteen lanes restore vector speed (platform.md §3).
public typealias FloatPointer = UnsafeMutablePointer<Float>
public typealias ConstFloatPointer = UnsafePointer<Float>

@inline(__always)
func load16(_ p: UnsafePointer<Float>, _ i: Int) -> SIMD16<Float> {
    UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self)
}

@inline(__always)
func store16(_ p: UnsafeMutablePointer<Float>, _ i: Int, _ v: SIMD16<Float>) {
    UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: SIMD16<Float>.self)
}

/// Σ x[0..<n]
@inline(__always)
public func vectorSum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD16<Float>()
    var i = 0
    while i + 16 <= n { acc += load16(x, i); i += 16 }
    var s = acc.sum()
    while i < n { s += x[i]; i += 1 }
    return s
}

/// Σ x[i]·y[i]
@inline(__always)
public func vectorDot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD16<Float>()
    var i = 0
    while i + 16 <= n { acc.addProduct(load16(x, i), load16(y, i)); i += 16 }
    var s = acc.sum()
    while i < n { s += x[i] * y[i]; i += 1 }
    return s
}

/// max x[0..<n] (n ≥ 1)
@inline(__always)
public func vectorMax(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var i = 0
    var m = -Float.infinity
    if n >= 16 {
        var acc = load16(x, 0)
        i = 16
        while i + 16 <= n { acc = pointwiseMax(acc, load16(x, i)); i += 16 }
        m = acc.max()
    }
    while i < n { m = Swift.max(m, x[i]); i += 1 }
    return m
}

/// y[i] += x[i]
@inline(__always)
public func vectorAdd(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) {
    for i in 0..<n { y[i] += x[i] }
}

/// y[i] = a[i] + b[i]
@inline(__always)
public func vectorAdd(_ y: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) {
    for i in 0..<n { y[i] = a[i] + b[i] }
}

/// y[i] += alpha · x[i]
@inline(__always)
public func vectorAddScaled(_ y: UnsafeMutablePointer<Float>, _ alpha: Float, _ x: UnsafePointer<Float>, _ n: Int) {
    for i in 0..<n { y[i] = y[i].addingProduct(alpha, x[i]) }
}

/// out[r, :] += bias[:] for every row of a rows × n matrix.
public func addBias(_ out: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, n: Int) {
    for r in 0..<rows { vectorAdd(out + r * n, bias, n) }
}

/// dbias[:] += Σ_r dout[r, :]
public func biasBackward(_ dbias: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>, rows: Int, n: Int) {
    for r in 0..<rows { vectorAdd(dbias, dout + r * n, n) }
}
