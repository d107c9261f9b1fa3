/// Reductions with explicit SIMD accumulators. Swift never reassociates floating-point sums, so a
/// plain `s += x[i]` loop stays scalar; sixteen lanes restore vector speed (docs/platform.md §3).
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
    while i + 16 <= n {
        acc += load16(x, i)
        i += 16
    }
    var s = acc.sum()
    while i < n {
        s += x[i]
        i += 1
    }
    return s
}

/// Σ x[i]·y[i]
@inline(__always)
public func vectorDot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD16<Float>()
    var i = 0
    while i + 16 <= n {
        acc.addProduct(load16(x, i), load16(y, i))
        i += 16
    }
    var s = acc.sum()
    while i < n {
        s += x[i] * y[i]
        i += 1
    }
    return s
}

/// max x[0..<n] (n ≥ 1). Eight independent accumulators: `pointwiseMax` on SIMD16 measured
/// 0.75 ns/element here (not lowered to vmaxps), this form 0.1 (`rlhf bench kernels`, softmax).
@inline(__always)
public func vectorMax(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var a0 = -Float.infinity, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0
    var i = 0
    while i + 8 <= n {
        a0 = x[i] > a0 ? x[i] : a0
        a1 = x[i + 1] > a1 ? x[i + 1] : a1
        a2 = x[i + 2] > a2 ? x[i + 2] : a2
        a3 = x[i + 3] > a3 ? x[i + 3] : a3
        a4 = x[i + 4] > a4 ? x[i + 4] : a4
        a5 = x[i + 5] > a5 ? x[i + 5] : a5
        a6 = x[i + 6] > a6 ? x[i + 6] : a6
        a7 = x[i + 7] > a7 ? x[i + 7] : a7
        i += 8
    }
    var m = Swift.max(Swift.max(Swift.max(a0, a1), Swift.max(a2, a3)), Swift.max(Swift.max(a4, a5), Swift.max(a6, a7)))
    while i < n {
        m = x[i] > m ? x[i] : m
        i += 1
    }
    return m
}

/// y[i] += x[i]
@inline(__always)
public func vectorAdd(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) {
    for i in 0..<n { y[i] += x[i] }
}

/// y[i] = a[i] + b[i]
@inline(__always)
public func vectorAdd(_ y: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int)
{
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
/// Split by columns, each summed over the rows in order: the same sums at every thread count.
public func biasBackward(_ dbias: UnsafeMutablePointer<Float>, _ dout: UnsafePointer<Float>, rows: Int, n: Int) {
    Parallel.forEach((n + 63) / 64, costPerItem: 64 * rows) { blocks in
        let cols = (blocks.lowerBound * 64)..<min(n, blocks.upperBound * 64)
        for r in 0..<rows { vectorAdd(dbias + cols.lowerBound, dout + r * n + cols.lowerBound, cols.count) }
    }
}
