/// The keys or the values of a KV cache in the precision of the model: fp32, or bf16 in precision
/// bf16 (half the memory; the forward passes round keys and values to bf16 in that precision, so
/// storing them is exact: docs/architecture.md §12).
public final class KVCacheStorage: @unchecked Sendable {
    public let precision: Precision
    let fp32: FloatBuffer?
    let bf16: BFloat16Buffer?

    public init(count: Int, precision: Precision) {
        self.precision = precision
        fp32 = precision == .fp32 ? FloatBuffer(count: count) : nil
        bf16 = precision == .bf16 ? BFloat16Buffer(count: count) : nil
    }

    /// Bytes per stored value.
    public static func bytes(_ precision: Precision) -> Int { precision == .bf16 ? 2 : 4 }

    /// The rows starting at element `offset`.
    public func rows(at offset: Int) -> KVRows {
        KVRows(fp32: fp32.map { $0.pointer + offset }, bf16: bf16.map { $0.pointer + offset })
    }
}

/// A pointer into a `KVCacheStorage`: one sequence's keys or values of one layer.
public struct KVRows {
    let fp32: UnsafeMutablePointer<Float>?
    let bf16: UnsafeMutablePointer<UInt16>?

    init(fp32: UnsafeMutablePointer<Float>?, bf16: UnsafeMutablePointer<UInt16>?) {
        self.fp32 = fp32
        self.bf16 = bf16
    }
    /// fp32 rows at `pointer`.
    public init(_ pointer: UnsafeMutablePointer<Float>) { self.init(fp32: pointer, bf16: nil) }

    /// Writes `count` values at element `offset` (rounded to bf16 when stored as bf16).
    public func store(_ x: UnsafePointer<Float>, at offset: Int = 0, count: Int) {
        if let fp32 { (fp32 + offset).update(from: x, count: count) }
        if let bf16 { BFloat16.convert(x, to: bf16 + offset, count: count) }
    }

    /// `count` values at element `offset` as fp32: in place, or expanded into `scratch`.
    @inline(__always)
    func load(at offset: Int, count: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        if let fp32 { return UnsafePointer(fp32 + offset) }
        BFloat16.expand(bf16! + offset, to: scratch, count: count)
        return UnsafePointer(scratch)
    }
}

extension BFloat16 {
    /// x[i] ← rounded(x[i]) for `count` values of rows of `width` at `stride` (the keys and
    /// values of a bf16 forward, as a bf16 cache would hold them).
    public static func round(_ x: UnsafeMutablePointer<Float>, rows: Int, width: Int, stride: Int) {
        for r in 0..<rows {
            let row = x + r * stride
            for i in 0..<width { row[i] = rounded(row[i]) }
        }
    }
}
