import Foundation

/// A 64-byte aligned, heap-allocated array of Float32 that never moves.
///
/// Kernels work on raw pointers (no bounds checks, no copy-on-write in hot loops); this class owns
/// the memory and is `@unchecked Sendable` because concurrent users synchronise by construction
/// (a buffer is written by one task, then handed over), the way llm.c hands out its activation slab.
public final class FloatBuffer: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int
    /// The shared segment the floats live in (frozen weights kept once per host); nil when the
    /// buffer owns its memory.
    public let holder: SharedSegment?

    /// Allocates `count` floats set to zero.
    public init(count: Int) {
        precondition(count >= 0, "FloatBuffer: negative count \(count)")
        self.count = count
        holder = nil
        var raw: UnsafeMutableRawPointer? = nil
        // Never inside a precondition: -Ounchecked would drop the allocation (docs/platform.md §2).
        let status = posix_memalign(&raw, 64, max(count, 1) * MemoryLayout<Float>.stride)
        guard status == 0, let raw else {
            fatalError("FloatBuffer: cannot allocate \(count) floats (posix_memalign \(status))")
        }
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    /// Floats that `holder` owns (see `init(in:offset:count:)`).
    init(viewing pointer: UnsafeMutablePointer<Float>, count: Int, holder: SharedSegment) {
        (self.pointer, self.count, self.holder) = (pointer, count, holder)
    }

    deinit { if holder == nil { free(pointer) } }

    public subscript(index: Int) -> Float {
        get { pointer[index] }
        set { pointer[index] = newValue }
    }

    public var buffer: UnsafeMutableBufferPointer<Float> { .init(start: pointer, count: count) }
    public var array: [Float] { Array(buffer) }

    public func zero() { pointer.update(repeating: 0, count: count) }

    /// Every value × `factor`.
    public func scale(by factor: Float) { for i in 0..<count { pointer[i] *= factor } }

    public func copy(from other: FloatBuffer) {
        precondition(other.count == count, "FloatBuffer.copy: \(other.count) floats into \(count)")
        pointer.update(from: other.pointer, count: count)
    }

    /// Gives the whole memory pages inside `range` back to the system (madvise MADV_DONTNEED): they
    /// read as zero until written again, and no longer count in the resident set. The values of
    /// `range` are lost; the floats of `range` outside whole pages (all of a small range) are set
    /// to NaN, so that a read the owner should not have made shows in small tensors (the tests').
    /// In a shared segment the creator gives the pages back for every process (the others,
    /// mapping it read-only, leave it to the creator).
    public func releasePages(_ range: Range<Int>) {
        if let holder, !holder.writable { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE))) / MemoryLayout<Float>.stride
        // Floats of `range` from the first to the last whole page (the buffer is 64-byte aligned).
        let base = Int(bitPattern: UInt(bitPattern: pointer) / UInt(MemoryLayout<Float>.stride) % UInt(page))
        let first = (base + range.lowerBound + page - 1) / page * page - base
        let last = (base + range.upperBound) / page * page - base
        guard last > first else { return (pointer + range.lowerBound).update(repeating: .nan, count: range.count) }
        (pointer + range.lowerBound).update(repeating: .nan, count: first - range.lowerBound)
        (pointer + last).update(repeating: .nan, count: range.upperBound - last)
        let bytes = (last - first) * MemoryLayout<Float>.stride
        if let holder {
            holder.release(start: holder.base.distance(to: UnsafeMutableRawPointer(pointer + first)), count: bytes)
        } else {
            _ = madvise(pointer + first, bytes, MADV_DONTNEED)
        }
    }

    public func clone() -> FloatBuffer {
        let result = FloatBuffer(count: count)
        result.copy(from: self)
        return result
    }
}
