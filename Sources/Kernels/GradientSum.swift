import Foundation

/// A running sum of gradients in Float64.
///
/// Each micro-batch's Float32 gradient is added here; ranks then all-reduce these sums. A sum of
/// a few Float32 values in Float64 is exact unless their magnitudes span ~2^29, so the total does
/// not depend on how micro-batches were grouped — one process or any number of ranks give
/// bit-identical gradients, and so identical training (tested in DataParallelTests). Summing in
/// Float32 instead lets rounding noise differ by world size, which Adam amplifies on parameters
/// whose true gradient is zero (the attention key bias) into lr-sized differences.
public final class GradientSum: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Double>
    public let count: Int

    public init(count: Int) {
        self.count = count
        pointer = .allocate(capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }
    deinit { pointer.deallocate() }

    public func zero() { pointer.update(repeating: 0, count: count) }

    /// sum += gradients
    public func add(_ gradients: FloatBuffer) { add(gradients, range: 0..<count) }

    /// sum[range] += gradients[range] (ranges are the model's own gradient buckets).
    public func add(_ gradients: FloatBuffer, range: Range<Int>) {
        precondition(
            gradients.count == count && range.lowerBound >= 0 && range.upperBound <= count,
            "GradientSum.add: range \(range) of \(count)")
        let g = gradients.pointer, s = pointer
        for i in range { s[i] += Double(g[i]) }
    }

    /// gradients = Float(sum)
    public func write(into gradients: FloatBuffer) {
        precondition(gradients.count == count, "GradientSum.write: \(count) values into \(gradients.count)")
        let g = gradients.pointer, s = pointer
        for i in 0..<count { g[i] = Float(s[i]) }
    }
}
