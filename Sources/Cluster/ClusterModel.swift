import Foundation

/// One message of n bytes between two ranks costs `latency + n / bandwidth` (the α–β model of
/// Hockney 1994, the one Thakur, Rabenseifner & Gropp 2005 use for MPI's collectives).
public struct LinkCost: Sendable, Equatable {
    public var latency: Double  // α, seconds
    public var bandwidth: Double  // β, bytes per second

    public init(latency: Double, bandwidth: Double) {
        self.latency = latency
        self.bandwidth = bandwidth
    }

    /// α and β from a sweep of all-reduces over `ranks` ranks (`sizes` bytes, best seconds each,
    /// sent in messages of `messageBytes`), inverting the ring cost of `ReductionCost.ring`:
    /// α from the smallest size (one message, 2(p − 1) latencies), β from the bytes and the
    /// seconds left after the latencies between the smallest and the largest. Medium sizes are not
    /// fitted: over TCP an 8 B all-reduce took 0.01 ms, 1 MiB 17 ms and 16 MiB 56 ms when two ranks
    /// shared a core (no line passes through all three); gradients travel in the large messages.
    public static func fitted(sizes: [Int], seconds: [Double], ranks: Int, messageBytes: Int) -> LinkCost? {
        guard ranks > 1, messageBytes > 0, sizes.count == seconds.count,
            let small = sizes.indices.min(by: { sizes[$0] < sizes[$1] }),
            let large = sizes.indices.max(by: { sizes[$0] < sizes[$1] }), sizes[large] > sizes[small]
        else { return nil }
        let steps = 2 * Double(ranks - 1), p = Double(ranks)
        let latency = seconds[small] / steps
        let messages = Double((sizes[large] + messageBytes - 1) / messageBytes)
        let transfer = seconds[large] - messages * steps * latency - (seconds[small] - steps * latency)
        guard transfer > 0 else { return nil }
        let bandwidth = 2 * (p - 1) / p * Double(sizes[large] - sizes[small]) / transfer
        return LinkCost(latency: latency, bandwidth: bandwidth)
    }
}

/// Seconds of a rank's work on T threads by Amdahl's law, t(T) = t(1)·((1 − f) + f/T), with the
/// parallel fraction f fitted from one and two threads (clamped to [0, 1]: a second thread that
/// slows the work down is taken as no gain, one that more than halves it as a perfect split).
public struct ThreadScaling: Sendable, Equatable {
    public var oneThread: Double
    public var parallelFraction: Double

    public init(oneThread: Double, twoThreads: Double) {
        self.oneThread = oneThread
        parallelFraction = min(max(2 * (1 - twoThreads / oneThread), 0), 1)
    }

    public func seconds(threads: Int) -> Double {
        oneThread * ((1 - parallelFraction) + parallelFraction / Double(max(threads, 1)))
    }
}

/// H hosts × R ranks per host × T threads per rank.
public struct ClusterLayout: Sendable, Hashable, CustomStringConvertible {
    public var hosts: Int, ranksPerHost: Int, threadsPerRank: Int
    public init(hosts: Int, ranksPerHost: Int, threadsPerRank: Int) {
        self.hosts = hosts
        self.ranksPerHost = ranksPerHost
        self.threadsPerRank = threadsPerRank
    }
    public var ranks: Int { hosts * ranksPerHost }
    public var cores: Int { ranks * threadsPerRank }
    public var description: String { "\(hosts) host(s) × \(ranksPerHost) rank(s) × \(threadsPerRank) thread(s)" }

    /// Every split of `cores` cores per host into ranks × threads (powers of two), one rank per
    /// core first.
    public static func splits(hosts: Int, coresPerHost: Int) -> [ClusterLayout] {
        var out: [ClusterLayout] = []
        var threads = 1
        while threads <= coresPerHost {
            if coresPerHost % threads == 0 {
                out.append(ClusterLayout(hosts: hosts, ranksPerHost: coresPerHost / threads, threadsPerRank: threads))
            }
            threads *= 2
        }
        return out
    }
}

/// Seconds of one all-reduce of a gradient sum along each route (`ReductionShape`).
public enum ReductionCost {
    /// A ring all-reduce of n bytes over p ranks in messages of b bytes (Patarasuk & Yuan 2009; a
    /// reduce-scatter then an all-gather, Thakur, Rabenseifner & Gropp 2005): m = ⌈n/b⌉ messages
    /// each take 2(p − 1) steps of one latency, and every rank sends and receives 2(p − 1)/p · n
    /// bytes: 2·m·α·(p − 1) + 2(p − 1)/p · n/β. Across hosts the ring's steps wait for its slowest
    /// link, so a flat ring over several hosts costs the link between hosts.
    public static func ring(bytes: Int, ranks: Int, messageBytes: Int, link: LinkCost) -> Double {
        guard ranks > 1, bytes > 0 else { return 0 }
        let p = Double(ranks), messages = Double((bytes + max(messageBytes, 1) - 1) / max(messageBytes, 1))
        return 2 * messages * link.latency * (p - 1) + 2 * (p - 1) / p * Double(bytes) / link.bandwidth
    }

    /// `cluster.reduction: flat`: one ring over every rank; on one host in 1 MiB messages (the
    /// route's size there, `hostBucketValues`), across hosts in `messageBytes`.
    public static func flat(
        bytes: Int, layout: ClusterLayout, messageBytes: Int, within: LinkCost, across: LinkCost
    ) -> Double {
        layout.hosts > 1
            ? ring(bytes: bytes, ranks: layout.ranks, messageBytes: messageBytes, link: across)
            : ring(bytes: bytes, ranks: layout.ranks, messageBytes: hostMessageBytes, link: within)
    }

    /// Bytes per message within a host.
    public static let hostMessageBytes = hostBucketValues * MemoryLayout<Double>.stride

    /// `cluster.reduction: hierarchical`: a reduce and a broadcast within the host (together the
    /// bytes of one all-reduce there, in 1 MiB messages) and a ring between the H hosts' leaders.
    public static func hierarchical(
        bytes: Int, layout: ClusterLayout, messageBytes: Int, within: LinkCost, across: LinkCost
    ) -> Double {
        ring(bytes: bytes, ranks: layout.ranksPerHost, messageBytes: hostMessageBytes, link: within)
            + ring(bytes: bytes, ranks: layout.hosts, messageBytes: messageBytes, link: across)
    }

    public static func seconds(
        _ shape: ReductionShape, bytes: Int, layout: ClusterLayout, messageBytes: Int, within: LinkCost,
        across: LinkCost
    ) -> Double {
        switch shape {
        case .flat: flat(bytes: bytes, layout: layout, messageBytes: messageBytes, within: within, across: across)
        case .hierarchical:
            hierarchical(bytes: bytes, layout: layout, messageBytes: messageBytes, within: within, across: across)
        }
    }
}
