import Foundation

/// What one host's measurements say about a cluster (`rlhf bench scale`), under weak scaling:
/// every core takes `unitsPerCore` units of work per step (sequences of an SFT step, prompts'
/// groups of a GRPO iteration), so a rank of T threads takes T times as many, and the step time
/// is its compute plus one all-reduce of the gradient sums (not overlapped: measured, overlapping
/// gained little once messages are sized for the link; benchmarks/2026-12-07-reduction-route-zen5.md).
public struct ScaleInputs: Sendable {
    /// Seconds per unit of one rank's step at 1 and 2 threads, measured at `unitsPerCore` units.
    public var computePerUnit: ThreadScaling
    public var unitsPerCore: Int
    /// Bytes all-reduced per step: the Float64 sums of the trainable parameters.
    public var gradientBytes: Int
    /// Bytes per message between hosts (`cluster.bucket_mib`, or sized from the link).
    public var messageBytes: Int
    public var within: LinkCost, across: LinkCost
    /// A rank's own memory, `fixedBytes + bytesPerUnit × units`; `sharedBytes` is kept once per host
    /// (the frozen weights, `cluster.share_weights`).
    public var fixedBytes: Double, bytesPerUnit: Double, sharedBytes: Double

    public init(
        computePerUnit: ThreadScaling, unitsPerCore: Int, gradientBytes: Int, messageBytes: Int, within: LinkCost,
        across: LinkCost, fixedBytes: Double, bytesPerUnit: Double, sharedBytes: Double
    ) {
        self.computePerUnit = computePerUnit
        self.unitsPerCore = unitsPerCore
        self.gradientBytes = gradientBytes
        self.messageBytes = messageBytes
        self.within = within
        self.across = across
        self.fixedBytes = fixedBytes
        self.bytesPerUnit = bytesPerUnit
        self.sharedBytes = sharedBytes
    }

    /// The step of every rank of `layout` on `units` units each (default: its weak-scaling share).
    public func predict(_ layout: ClusterLayout, shape: ReductionShape, units: Int? = nil) -> ScalePrediction {
        let share = units ?? unitsPerCore * layout.threadsPerRank
        let compute = computePerUnit.seconds(threads: layout.threadsPerRank) * Double(share)
        let reduce =
            layout.ranks > 1
            ? ReductionCost.seconds(
                shape, bytes: gradientBytes, layout: layout, messageBytes: messageBytes, within: within, across: across)
            : 0
        let step = compute + reduce
        let unitsPerSecond = Double(share) * Double(layout.ranks) / step
        // Against every core working alone at one thread with nothing to exchange.
        let ideal = Double(layout.cores) / computePerUnit.oneThread
        let rankBytes = fixedBytes + bytesPerUnit * Double(share)
        return ScalePrediction(
            layout: layout, shape: shape, unitsPerRank: share, computeSeconds: compute, reduceSeconds: reduce,
            stepSeconds: step, unitsPerSecond: unitsPerSecond, efficiency: unitsPerSecond / ideal,
            hostBytes: sharedBytes + Double(layout.ranksPerHost) * rankBytes)
    }

    /// The fastest split of each host's cores (and route) whose memory fits `hostBytes`, or nil.
    public func recommend(hosts: Int, coresPerHost: Int, hostBytes: Double) -> ScalePrediction? {
        let candidates = ClusterLayout.splits(hosts: hosts, coresPerHost: coresPerHost).flatMap { layout in
            ReductionShape.allCases.map { predict(layout, shape: $0) }
        }
        return candidates.filter { $0.hostBytes <= hostBytes }.max { $0.unitsPerSecond < $1.unitsPerSecond }
    }
}

/// One predicted step: its compute and all-reduce seconds, throughput in units per second,
/// efficiency against every core alone (units per second / (cores / seconds per unit at one
/// thread)), and one host's memory.
public struct ScalePrediction: Sendable {
    public var layout: ClusterLayout
    public var shape: ReductionShape
    public var unitsPerRank: Int
    public var computeSeconds: Double, reduceSeconds: Double, stepSeconds: Double
    public var unitsPerSecond: Double, efficiency: Double
    public var hostBytes: Double
}
