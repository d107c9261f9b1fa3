import Foundation
import Synchronization

/// Splits a kernel's independent work (rows, heads, parameter ranges) across the threads OpenBLAS
/// was given, so the elementwise passes between two sgemm calls use every core too.
///
/// One budget for both: a region uses `BLAS.threads` (OPENBLAS_NUM_THREADS) threads — the caller
/// plus workers of our own, started once and parked on a semaphore between regions — and holds
/// OpenBLAS at one thread while it runs, so an sgemm inside a chunk runs in its caller and the
/// process never has more busy threads than that budget. The workers are plain threads, not
/// Swift's cooperative pool or libdispatch's, so a region never waits on a thread that an
/// in-process rank is blocking.
///
/// Chunks are contiguous and fixed by (count, threads) alone, never by timing, and every kernel
/// here writes disjoint outputs per item (reductions over items run per column block, in item
/// order), so results are identical at every thread count (DecodeKernelTests and ParallelTests).
public enum Parallel {
    /// One region at a time in the process (ranks of an in-process test share it); the others,
    /// and regions nested in a chunk, run inline.
    private static let busy = Atomic<Bool>(false)
    nonisolated(unsafe) private static var workers: [Worker] = []

    /// Threads a region may use now (OpenBLAS's setting; 1 turns every region into a plain loop).
    public static var threads: Int { BLAS.threads }

    /// Calls body(range) over [0, count) in at most `threads` contiguous chunks, in parallel when
    /// count · costPerItem (≈ floating-point operations) is large enough to repay waking a thread.
    public static func forEach(_ count: Int, costPerItem: Int, _ body: (Range<Int>) -> Void) {
        let budget = BLAS.threads
        let n = min(budget, count)
        guard n > 1, count * costPerItem >= minimumWork,
            busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
        else {
            if count > 0 { body(0..<count) }
            return
        }
        BLAS.setThreads(1)
        while workers.count < n - 1 { workers.append(Worker()) }
        withoutActuallyEscaping(body) { body in
            for i in 1..<n { workers[i - 1].start { body(chunk(i, of: n, count: count)) } }
            body(chunk(0, of: n, count: count))
            for i in 1..<n { workers[i - 1].finish() }
        }
        BLAS.setThreads(budget)
        busy.store(false, ordering: .releasing)
    }

    /// Below this many flops a second thread costs more than it saves (a semaphore wake-up and
    /// join is ~5–10 µs; 100k flops ≈ 10 µs on one core).
    static let minimumWork = 100_000

    /// The i-th of n near-equal contiguous ranges of 0..<count.
    public static func chunk(_ i: Int, of n: Int, count: Int) -> Range<Int> {
        (count * i / n)..<(count * (i + 1) / n)
    }
}

/// A parked thread that runs one job per `start` and reports it done to `finish`.
private final class Worker: @unchecked Sendable {
    private let go = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
    private var job: (() -> Void)?

    init() {
        let thread = Thread { [self] in
            while true {
                go.wait()
                job?()
                job = nil
                done.signal()
            }
        }
        thread.name = "rlhf-kernels"
        thread.start()
    }

    /// The semaphores order the job's writes before `finish` returns, so the caller may read them.
    func start(_ work: @escaping () -> Void) {
        job = work
        go.signal()
    }
    func finish() { done.wait() }
}
