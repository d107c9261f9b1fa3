import Foundation
import Kernels

/// A gradient all-reduce running in the background (`Transport.startAllReduce`).
public final class PendingReduction: @unchecked Sendable {
    private let lock = NSLock()
    private var finished = false
    private var failure: Error?
    private var waiter: CheckedContinuation<Void, Error>?

    init() {}

    /// Called once, on the thread that ran the reduction.
    func complete(_ error: Error?) {
        let resume: CheckedContinuation<Void, Error>? = lock.withLock {
            finished = true
            failure = error
            defer { waiter = nil }
            return waiter
        }
        if let resume { if let error { resume.resume(throwing: error) } else { resume.resume() } }
    }

    /// Returns when the reduction is done (its own timeout ends a stalled one: the MPI watchdog).
    public func wait() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            let outcome: Result<Void, Error>? = lock.withLock {
                if finished { return failure.map { .failure($0) } ?? .success(()) }
                waiter = continuation
                return nil
            }
            if let outcome { continuation.resume(with: outcome) }
        }
    }
}

/// Σ over ranks of one optimizer step's gradient sum, bucket by bucket, with the buckets of the
/// step's last backward started while the layers below them are still being computed (DDP's
/// gradient buckets; Li et al., "PyTorch Distributed", VLDB 2020, §3.2.3).
///
/// The buckets are the model's `gradientBuckets`, always reduced in that order on every rank:
/// the ones the backward reports as it finishes them, then at `finish` the rest. Each bucket is
/// an exact Float64 sum (see `GradientSum`), so the result does not depend on which buckets were
/// overlapped or on the world size.
public final class OverlappedReduction: @unchecked Sendable {
    let sum: GradientSum, gradients: FloatBuffer, transport: any Transport
    let buckets: [Range<Int>]
    private var next = 0
    private var started: [PendingReduction] = []
    private var deferred: [Range<Int>] = []

    /// `gradients` is the last micro-batch's buffer: each reported bucket is added into `sum`
    /// (which already holds the earlier micro-batches) and its reduction started.
    public init(sum: GradientSum, gradients: FloatBuffer, buckets: [Range<Int>], transport: any Transport) {
        self.sum = sum
        self.gradients = gradients
        self.buckets = buckets
        self.transport = transport
    }

    /// For `backward(gradientsReady:)`, on the backward's thread: the next bucket is final.
    public func ready(_ range: Range<Int>) {
        precondition(
            next < buckets.count && buckets[next] == range,
            "gradient bucket \(range) reported out of order (expected "
                + "\(next < buckets.count ? "\(buckets[next])" : "none"))"
        )
        next += 1
        sum.add(gradients, range: range)
        if let pending = transport.startAllReduce(sum, range: range) {
            started.append(pending)
        } else {
            deferred.append(range)
        }
    }

    /// Adds and reduces the buckets the backward did not report, and waits for the started ones;
    /// afterwards `sum` holds the Σ over ranks.
    public func finish() async throws {
        // Transports that cannot start in the background (the embedded world) reduce the
        // reported buckets now, in the same order.
        for b in deferred { try await transport.allReduce(sum, range: b) }
        for b in buckets[next...] {
            sum.add(gradients, range: b)
            try await transport.allReduce(sum, range: b)
        }
        for pending in started { try await pending.wait() }
        started = []
        deferred = []
        next = 0
    }

    /// The step's gradient sum reduced bucket by bucket without any overlap. Every rank must take
    /// the same path, this one or `finish`, in a step: MPI does not match a blocking collective
    /// with a non-blocking one. Both are decided from settings and the job's layout, which all
    /// ranks share (`OverlapPolicy.decide`, and the same micro-batch count on every rank).
    public static func reduce(_ sum: GradientSum, buckets: [Range<Int>], transport: any Transport) async throws {
        for b in buckets { try await transport.allReduce(sum, range: b) }
    }
}
