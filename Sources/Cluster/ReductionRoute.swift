import CMPI
import Foundation

/// How a gradient sum travels between ranks (`cluster.reduction`).
///
/// `flat`: one MPI all-reduce over every rank. `hierarchical`: summed within each host through
/// shared memory onto the host's first rank, all-reduced between those leaders only, then copied
/// back within each host (the two-level all-reduce of Horovod's HOROVOD_HIERARCHICAL_ALLREDUCE and
/// Open MPI's coll/han): the link between hosts carries one rank's messages per host. A Float64
/// sum of Float32 gradients is exact (`GradientSum`), so both give the same bits.
///
/// Flat is the default: once messages are sized for the link, a ring all-reduce moves about 2n
/// bytes over each host's link either way, and the hierarchical route adds two steps within the
/// host that do not overlap the one between hosts. Measured with 2 ranks on each of 2 namespace
/// hosts it was slower (16 MiB: 77 ms against 47 ms; benchmarks/2026-12-07-reduction-route-zen5.md),
/// though those 4 ranks shared 2 cores; it saves the per-message latency of many ranks per host,
/// which the cluster model (`ReductionCost`) finds decisive at 32 ranks per host: a flat ring over
/// 64 such hosts pays 2 × 2,047 latencies per message (benchmarks/2026-12-07-cluster-model-zen5.md), and
/// the launch scripts pass `hierarchical` when the model recommends it.
public enum ReductionShape: String, Sendable, CaseIterable {
    case flat, hierarchical
}

/// `cluster.reduction` and `cluster.bucket_mib` together.
public struct ReductionSetting: Sendable, Equatable {
    public var shape: ReductionShape
    /// Bytes per message on the communicator that crosses hosts; 0: sized from the link
    /// measured at start when the ranks span several hosts, 1 MiB on one host.
    public var bucketBytes: Int
    public init(shape: ReductionShape, bucketBytes: Int) {
        self.shape = shape
        self.bucketBytes = bucketBytes
    }
}

/// The link between hosts as the gradient all-reduce sees it: the best seconds of an all-reduce
/// of each size in a sweep (`sizes`, bytes), from one value to 64 MiB.
///
/// A per-message latency measured on one value does not predict medium messages: between two
/// network-namespace hosts whose ranks shared a core, an all-reduce of 8 bytes took 0.01 ms but one of
/// 1 MiB 17–19 ms and one of 16 MiB only 56–61 ms (benchmarks/2026-12-07-reduction-route-zen5.md);
/// on their own cores 1 MiB took 0.5 ms and 4 MiB moved fewer bytes per second than 1 MiB. So the
/// bucket is read off the sweep: the smallest size that moves at least 95% of the best bytes per
/// second seen (a large bucket costs nothing when overlapped: each layer's range is started as
/// the backward finishes it, and a message is never larger than that range).
public struct LinkMeasure: Sendable, Equatable {
    public static let sizes = [8, 1 << 20, 4 << 20, 16 << 20, 64 << 20]
    /// Seconds per size of `sizes`.
    public var seconds: [Double]

    public init(seconds: [Double]) { self.seconds = seconds }

    /// Bytes per second of each size.
    public var throughputs: [Double] { zip(Self.sizes, seconds).map { Double($0) / max($1, 1e-9) } }

    public var bucketBytes: Int {
        let best = throughputs.dropFirst().max() ?? 0
        return zip(Self.sizes, throughputs).dropFirst().first { $0.1 >= 0.95 * best }?.0 ?? 1 << 20
    }

    public var summary: String {
        zip(Self.sizes, seconds).map { size, s in
            let label = size < 1 << 20 ? "\(size) B" : "\(size >> 20) MiB"
            return "\(label) \(String(format: "%.2f", s * 1e3)) ms"
        }.joined(separator: ", ")
    }
}

/// The route a world's gradient sums take, set once by `MPITransport.arrangeReductions` before
/// any step (every rank the same). `host`: the ranks of this host; `leaders`: the hosts' first
/// ranks (nil on the others); `bucketValues`: Float64 values per message on the communicator that
/// crosses hosts (the leaders', or the world's when flat).
final class ReductionRoute: @unchecked Sendable {
    struct Levels {
        let host: MPIHandle<MPI_Comm?>
        let isHostRoot: Bool
        let leaders: MPIHandle<MPI_Comm?>?
    }
    let levels: Levels?
    let bucketValues: Int

    init(levels: Levels?, bucketBytes: Int) {
        self.levels = levels
        bucketValues = max(bucketBytes / MemoryLayout<Double>.stride, 1)
    }

    /// What the world did before routes: flat, in 1 MiB messages.
    static let flat = ReductionRoute(levels: nil, bucketBytes: 1 << 20)
}

/// Within a host messages stay 1 MiB: the size shared memory moves fastest (docs/platform.md §4).
let hostBucketValues = (1 << 20) / MemoryLayout<Double>.stride
