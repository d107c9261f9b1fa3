import CMPI
import Foundation

/// Gradient sums along a `ReductionRoute`, on the MPI thread.
extension MPIRuntime {
    /// Sets up the route `setting` asks for on `comm` (a collective over it) and says how it runs.
    func makeRoute(_ setting: ReductionSetting, comm: MPIHandle<MPI_Comm?>, timeout: Double) throws -> (
        ReductionRoute, String
    ) {
        let host = try splitByHost(comm: comm, timeout: timeout)
        let (rank, size) = rankAndSize(comm)
        let (hostRank, hostSize) = rankAndSize(host)
        // Counted from the split itself, not from the launcher's environment.
        let hosts = Int(try allReduceDoubles([hostRank == 0 ? 1 : 0], comm: comm, timeout: timeout)[0])
        let hierarchical = setting.shape == .hierarchical
        // The hosts' first ranks: the hierarchical route's step between hosts, and who measures the link.
        let group =
            hosts > 1 || hierarchical
            ? try split(color: hostRank == 0 ? 0 : 1, key: rank, comm: comm, timeout: timeout) : nil
        let leaders = hostRank == 0 ? group : nil
        let levels = hierarchical ? ReductionRoute.Levels(host: host, isHostRoot: hostRank == 0, leaders: leaders) : nil
        var bucket = setting.bucketBytes > 0 ? max(8, setting.bucketBytes / 8 * 8) : 1 << 20
        var link: LinkMeasure?
        if setting.bucketBytes == 0 && hosts > 1 {
            // Measured by one rank per host while the others sleep (with every rank of a host in it,
            // an oversubscribed 64-rank sweep took 80 s); the link is the same for either route.
            var figures = [Double](repeating: -1, count: LinkMeasure.sizes.count)  // -1: not measured
            if let leaders {
                let measured = try measureLink(comm: leaders, timeout: timeout).seconds
                figures.replaceSubrange(0..<measured.count, with: measured)
                // One rank's timings for all: a bucket count that differed by rank would pair
                // mismatched collectives.
                try broadcastDoubles(&figures, comm: leaders, timeout: timeout)
            }
            // The host's other ranks wait here through the whole sweep, each of whose collectives
            // has its own timeout.
            try broadcastDoubles(&figures, comm: host, timeout: timeout * Double(4 * LinkMeasure.sizes.count))
            link = LinkMeasure(seconds: Array(figures.prefix { $0 >= 0 }))
            bucket = link!.bucketBytes
        }
        // Communicators the route does not keep.
        if !hierarchical { freeCommunicator(host) }
        if let group, !hierarchical || hostRank != 0 { freeCommunicator(group) }
        let route = ReductionRoute(levels: levels, bucketBytes: bucket)
        let mib =
            (bucket % 1_048_576 == 0 ? "\(bucket >> 20)" : String(format: "%.2f", Double(bucket) / 1_048_576))
            + " MiB messages"
        let sized = link.map { " (sized from all-reduces measured at start: \($0.summary))" } ?? ""
        let line =
            levels == nil
            ? "gradient reduction: flat, one all-reduce over \(size) ranks on \(hosts) host(s) in \(mib)\(sized)"
            : "gradient reduction: hierarchical, summed within each of the \(hosts) host(s) through shared memory "
                + "(this host: \(hostSize) ranks), all-reduced between the hosts' first ranks in \(mib)\(sized), "
                + "copied back within each host"
        return (route, line)
    }

    /// All-reduces of each size of `LinkMeasure.sizes` on `comm`, best of three, up to the first
    /// size that moves fewer bytes per second than the best before it (past the link's knee).
    func measureLink(comm: MPIHandle<MPI_Comm?>, timeout: Double) throws -> LinkMeasure {
        let count = LinkMeasure.sizes.max()! / MemoryLayout<Double>.stride
        let buffer = UnsafeMutablePointer<Double>.allocate(capacity: count)
        defer { buffer.deallocate() }
        buffer.initialize(repeating: 0, count: count)
        var seconds: [Double] = [], best = 0.0
        for size in LinkMeasure.sizes {
            let n = Int32(size / MemoryLayout<Double>.stride)
            var fastest = Double.infinity
            for _ in 0..<3 {
                try barrier(comm: comm, timeout: timeout)
                let start = Date()
                guarded("an all-reduce of \(n) values measuring the link", timeout: timeout) {
                    _ = MPI_Allreduce(cmpi_in_place(), buffer, n, cmpi_double(), cmpi_sum(), comm.raw)
                }
                fastest = min(fastest, Date().timeIntervalSince(start))
            }
            seconds.append(fastest)
            // Every rank of `comm` must stop at the same size: decided from rank 0's timing.
            var rate = [Double(size) / fastest]
            try broadcastDoubles(&rate, comm: comm, timeout: timeout)
            if size > 8 && rate[0] < best { break }
            best = max(best, rate[0])
        }
        return LinkMeasure(seconds: seconds)
    }

    func freeCommunicator(_ handle: MPIHandle<MPI_Comm?>) {
        var raw = handle.raw
        MPI_Comm_free(&raw)
    }

    /// Polled (sleeping between tests): the host's other ranks wait here while its first rank
    /// measures the link, and spinning would take the cores the measurement runs on.
    func broadcastDoubles(_ values: inout [Double], comm: MPIHandle<MPI_Comm?>, timeout: Double) throws {
        try values.withUnsafeMutableBufferPointer { buffer in
            // The buffer must stay put until the broadcast completes: both inside this closure.
            var request: [MPI_Request?] = [cmpi_request_null()]
            MPI_Ibcast(buffer.baseAddress, Int32(buffer.count), cmpi_double(), 0, comm.raw, &request[0])
            try wait(&request, timeout: timeout, what: "a broadcast of the link measured at start")
        }
    }

    /// Σ over the ranks of `comm` of `count` Float64 values, in place, along `route`: blocking
    /// collectives under the watchdog. Only ever call it on the MPI thread.
    nonisolated func routedAllReduceSum(
        _ pointer: UnsafeMutablePointer<Double>, count: Int, route: ReductionRoute, comm: MPIHandle<MPI_Comm?>,
        timeout: Double
    ) {
        let what = "an all-reduce of \(count) values"
        guard let levels = route.levels else {
            return bucketedAllReduceSum(
                pointer, count: count, type: cmpi_double(), comm: comm, timeout: timeout, bucket: route.bucketValues)
        }
        forEachChunk(count, hostBucketValues) { o, n in
            guarded(what, timeout: timeout) {
                _ = MPI_Reduce(
                    levels.isHostRoot ? cmpi_in_place() : UnsafeRawPointer(pointer + o),
                    levels.isHostRoot ? pointer + o : nil, n, cmpi_double(), cmpi_sum(), 0, levels.host.raw)
            }
        }
        if let leaders = levels.leaders {
            forEachChunk(count, route.bucketValues) { o, n in
                guarded(what, timeout: timeout) {
                    _ = MPI_Allreduce(cmpi_in_place(), pointer + o, n, cmpi_double(), cmpi_sum(), leaders.raw)
                }
            }
        }
        forEachChunk(count, hostBucketValues) { o, n in
            guarded(what, timeout: timeout) {
                _ = MPI_Bcast(pointer + o, n, cmpi_double(), 0, levels.host.raw)
            }
        }
    }

    /// `routedAllReduceSum` beside computation (`startAllReduce`): the same messages as
    /// non-blocking collectives, each level polled with a growing sleep (see `pollRequests`).
    nonisolated func polledRoutedAllReduceSum(
        _ pointer: UnsafeMutablePointer<Double>, count: Int, route: ReductionRoute, comm: MPIHandle<MPI_Comm?>,
        timeout: Double
    ) throws {
        let what = "an all-reduce of \(count) gradient values"
        let start = Date()
        CollectiveWatchdog.shared.begin(what, timeout: timeout)
        defer {
            CollectiveWatchdog.shared.end()
            CommunicationClock.add(Date().timeIntervalSince(start))
        }
        func level(_ bucket: Int, _ issue: (Int, Int32, inout MPI_Request?) -> Void) throws {
            var requests: [MPI_Request?] = []
            forEachChunk(count, bucket) { o, n in
                var request: MPI_Request? = cmpi_request_null()
                issue(o, n, &request)
                requests.append(request)
            }
            try pollRequests(&requests, what: what, start: start, timeout: timeout)
        }
        guard let levels = route.levels else {
            return try level(route.bucketValues) { o, n, r in
                _ = MPI_Iallreduce(cmpi_in_place(), pointer + o, n, cmpi_double(), cmpi_sum(), comm.raw, &r)
            }
        }
        // Within the host blocking: shared memory takes a few ms even for tens of MiB, while libnbc's
        // segmented reduce and broadcast advance only when tested, a round per test (polled, a
        // 16 MiB step took 10x longer on one host). The cost: the host's other ranks spin in the
        // broadcast while their leader waits on the link, on cores their backward could use.
        forEachChunk(count, hostBucketValues) { o, n in
            _ = MPI_Reduce(
                levels.isHostRoot ? cmpi_in_place() : UnsafeRawPointer(pointer + o),
                levels.isHostRoot ? pointer + o : nil, n, cmpi_double(), cmpi_sum(), 0, levels.host.raw)
        }
        if let leaders = levels.leaders {
            try level(route.bucketValues) { o, n, r in
                _ = MPI_Iallreduce(cmpi_in_place(), pointer + o, n, cmpi_double(), cmpi_sum(), leaders.raw, &r)
            }
        }
        forEachChunk(count, hostBucketValues) { o, n in _ = MPI_Bcast(pointer + o, n, cmpi_double(), 0, levels.host.raw)
        }
    }

    /// Tests `requests` until all are done, sleeping 10 µs doubling to 0.5 ms between tests: a
    /// blocking wait busy-polls, and the rank's backward shares its core with the MPI thread.
    nonisolated func pollRequests(_ requests: inout [MPI_Request?], what: String, start: Date, timeout: Double) throws {
        var pause: useconds_t = 10
        while true {
            var done: Int32 = 0
            MPI_Testall(Int32(requests.count), &requests, &done, nil)
            if done != 0 { return }
            if Date().timeIntervalSince(start) > timeout {
                throw TransportError(
                    "timed out after \(Int(timeout)) s waiting for \(what)"
                        + RankStatus.joined(RankStatus.shared.absentees(waitingFor: what)))
            }
            usleep(pause)
            pause = min(pause * 2, 500)
        }
    }
}

/// Calls `body(offset, count)` for consecutive chunks of at most `bucket` of `total` values.
func forEachChunk(_ total: Int, _ bucket: Int, _ body: (Int, Int32) throws -> Void) rethrows {
    var offset = 0
    while offset < total {
        let n = min(bucket, total - offset)
        try body(offset, Int32(n))
        offset += n
    }
}
