import Foundation

/// bfloat16 values as their bit patterns (UInt16): the upper half of an IEEE fp32, 8 exponent bits
/// and 7 mantissa bits. Rounding from fp32 is to nearest, ties to even, as PyTorch's
/// `tensor.to(torch.bfloat16)` and the AVX512_BF16 instruction VCVTNEPS2BF16 do; NaN stays NaN.
public enum BFloat16 {
    /// The bf16 nearest to `x` (ties to even).
    @inline(__always)
    public static func bits(_ x: Float) -> UInt16 {
        let u = x.bitPattern
        // A NaN whose payload sits in the low half would round to infinity: keep it a quiet NaN.
        if u & 0x7fff_ffff > 0x7f80_0000 { return UInt16(truncatingIfNeeded: (u >> 16) | 0x40) }
        return UInt16(truncatingIfNeeded: (u &+ 0x7fff &+ ((u >> 16) & 1)) >> 16)
    }

    /// The fp32 value of a bf16 (exact).
    @inline(__always)
    public static func float(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

    /// `x` rounded to bf16 and back: the value a bf16 matmul input holds.
    @inline(__always)
    public static func rounded(_ x: Float) -> Float { float(bits(x)) }

    /// out[i] = bits(x[i]) for `count` values.
    public static func convert(_ x: UnsafePointer<Float>, to out: UnsafeMutablePointer<UInt16>, count: Int) {
        for i in 0..<count { out[i] = bits(x[i]) }
    }

    /// A strided [rows, columns] fp32 matrix (row stride `stride`) into a contiguous bf16 one.
    public static func convert(
        rows: Int, columns: Int, _ x: UnsafePointer<Float>, stride: Int, to out: UnsafeMutablePointer<UInt16>
    ) {
        if stride == columns { return convert(x, to: out, count: rows * columns) }
        for r in 0..<rows { convert(x + r * stride, to: out + r * columns, count: columns) }
    }

    /// out[i] = float(x[i]) for `count` values.
    public static func expand(_ x: UnsafePointer<UInt16>, to out: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { out[i] = float(x[i]) }
    }
}

/// A 64-byte aligned array of bf16 bit patterns that never moves (FloatBuffer's counterpart).
public final class BFloat16Buffer: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<UInt16>
    public let count: Int
    /// The shared segment the values live in; nil when the buffer owns its memory.
    public let holder: SharedSegment?

    public init(count: Int) {
        precondition(count >= 0, "BFloat16Buffer: negative count \(count)")
        self.count = count
        holder = nil
        var raw: UnsafeMutableRawPointer? = nil
        let status = posix_memalign(&raw, 64, max(count, 1) * MemoryLayout<UInt16>.stride)
        guard status == 0, let raw else {
            fatalError("BFloat16Buffer: cannot allocate \(count) values (posix_memalign \(status))")
        }
        pointer = raw.bindMemory(to: UInt16.self, capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    /// The bf16 rounding of `values`.
    public convenience init(rounding values: FloatBuffer) {
        self.init(count: values.count)
        update(from: values)
    }

    /// Values that `holder` owns (see `init(in:offset:count:)`).
    init(viewing pointer: UnsafeMutablePointer<UInt16>, count: Int, holder: SharedSegment) {
        (self.pointer, self.count, self.holder) = (pointer, count, holder)
    }

    deinit { if holder == nil { free(pointer) } }

    /// Rounds `values` (same count) into this buffer.
    public func update(from values: FloatBuffer) {
        precondition(values.count == count, "BFloat16Buffer.update: \(values.count) floats into \(count)")
        BFloat16.convert(values.pointer, to: pointer, count: count)
    }
}
