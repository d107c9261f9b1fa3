import CMPI
import Foundation
import Kernels

/// The MPI library behind one actor whose executor is a dedicated thread: every MPI call in the
/// process runs on that thread (FUNNELED), in the order the actor receives them.
public actor MPIRuntime {
    public static let shared = MPIRuntime()
    private let executor = DedicatedThreadExecutor(name: "mpi")
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    private var initialized = false

    /// Initialises MPI on the MPI thread (a singleton world without mpirun) and returns the world.
    public func world(timeout: Double = defaultTransportTimeout) -> MPITransport {
        if !initialized {
            var flag: Int32 = 0
            MPI_Initialized(&flag)
            if flag == 0 {
                var provided: Int32 = 0
                MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided)
            }
            initialized = true
        }
        return MPITransport(runtime: self, communicator: MPIHandle(raw: cmpi_comm_world()), timeout: timeout)
    }

    /// Finalises MPI if this process initialised it; without it mpirun reports a normal exit as
    /// an abnormal termination and returns non-zero.
    public func finalize() {
        guard initialized else { return }
        var finalized: Int32 = 0
        MPI_Finalized(&finalized)
        if finalized == 0 { MPI_Finalize() }
        initialized = false
    }

    /// The MPI library's own name and version (callable before MPI_Init), first line.
    public nonisolated static var libraryVersion: String {
        var buffer = [CChar](repeating: 0, count: Int(MPI_MAX_LIBRARY_VERSION_STRING) + 1)
        var length: Int32 = 0
        MPI_Get_library_version(&buffer, &length)
        let text = String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.split(whereSeparator: \.isNewline).first.map {
            $0.trimmingCharacters(in: .whitespacesAndNewlines.union(.controlCharacters))
        } ?? text
    }

    /// True when an MPI launcher (mpirun, srun with PMI) started this process.
    public nonisolated static var launchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMI_RANK"] != nil || env["PMIX_RANK"] != nil
    }

    /// Baseline for `rlhf bench allreduce`: best seconds of one plain blocking MPI_Allreduce of
    /// `count` Float64 values on the world (what the routed gradient sum is compared against).
    public func rawAllReduceSeconds(count: Int, repeats: Int) -> Double {
        let buffer = UnsafeMutablePointer<Double>.allocate(capacity: count)
        defer { buffer.deallocate() }
        buffer.initialize(repeating: 1, count: count)
        var best = Double.infinity
        for _ in 0..<(repeats + 1) {
            MPI_Barrier(cmpi_comm_world())
            let start = Date()
            MPI_Allreduce(cmpi_in_place(), buffer, Int32(count), cmpi_double(), cmpi_sum(), cmpi_comm_world())
            best = min(best, Date().timeIntervalSince(start))
        }
        return best
    }

    /// Runs `body` on the MPI thread after the jobs already queued, returning at once; `body`
    /// may call only the nonisolated MPI helpers below (it runs outside the actor's jobs, but on
    /// its thread, so MPI stays FUNNELED).
    nonisolated func submit(_ body: @escaping () -> Void) { executor.submit(body) }

    /// Ends every process of the job (after the caller has printed why).
    public func abort(code: Int32 = 1) {
        MPI_Abort(cmpi_comm_world(), code)
    }

    func rankAndSize(_ comm: MPIHandle<MPI_Comm?>) -> (Int, Int) {
        var rank: Int32 = 0, size: Int32 = 0
        MPI_Comm_rank(comm.raw, &rank)
        MPI_Comm_size(comm.raw, &size)
        return (Int(rank), Int(size))
    }

    /// Polls `requests` (point-to-point and barriers) until all complete or the deadline passes. Busy for the first
    /// millisecond (latency), then sleeping between polls so a waiting rank leaves its core to
    /// the others (ranks share cores when oversubscribed).
    /// `peers`: the ranks whose absence a timeout reports (nil: every rank).
    func wait(_ requests: inout [MPI_Request?], timeout: Double, what: @autoclosure () -> String, peers: [Int]? = nil)
        throws
    {
        let start = Date()
        var pause: useconds_t = 0
        var published = false
        defer { if published { RankStatus.shared.setWaiting(nil) } }
        while true {
            var done: Int32 = 0
            MPI_Testall(Int32(requests.count), &requests, &done, nil)
            if done != 0 { return }
            let waited = Date().timeIntervalSince(start)
            if waited > 0.05 && !published {
                RankStatus.shared.setWaiting(what())
                published = true
            }
            if waited > timeout {
                throw TransportError(
                    "timed out after \(Int(timeout)) s waiting for \(what())"
                        + RankStatus.joined(RankStatus.shared.absentees(waitingFor: what(), among: peers)))
            }
            if waited > 0.001 {
                pause = min(max(pause * 2, 20), 2000)
                usleep(pause)
            }
        }
    }

    /// Runs a blocking collective under the watchdog (see `CollectiveWatchdog`).
    nonisolated func guarded<T>(_ what: @autoclosure () -> String, timeout: Double, _ body: () -> T) -> T {
        CollectiveWatchdog.shared.begin(what(), timeout: timeout)
        let start = Date()
        defer {
            CollectiveWatchdog.shared.end()
            CommunicationClock.add(Date().timeIntervalSince(start))
        }
        return body()
    }

    /// In-place sum over `count` values of `T` (Float or Double), in 1 MB buckets (docs/platform.md §4:
    /// ~3× faster than one call for large buffers).
    func allReduceSum<T>(
        _ pointer: UnsafeMutablePointer<T>, count: Int, type: MPI_Datatype?, comm: MPIHandle<MPI_Comm?>, timeout: Double
    ) {
        bucketedAllReduceSum(pointer, count: count, type: type, comm: comm, timeout: timeout)
    }

    /// The body of `allReduceSum` (and of a flat route, in its own message size).
    /// Nonisolated, so it runs wherever it is called: only ever call it on the MPI thread.
    nonisolated func bucketedAllReduceSum<T>(
        _ pointer: UnsafeMutablePointer<T>, count: Int, type: MPI_Datatype?, comm: MPIHandle<MPI_Comm?>,
        timeout: Double, bucket: Int = (1 << 20) / MemoryLayout<T>.stride
    ) {
        forEachChunk(count, bucket) { o, n in
            guarded("an all-reduce of \(count) values", timeout: timeout) {
                _ = MPI_Allreduce(cmpi_in_place(), pointer + o, n, type, cmpi_sum(), comm.raw)
            }
        }
    }

    func allReduceDoubles(_ values: [Double], comm: MPIHandle<MPI_Comm?>, timeout: Double) throws -> [Double] {
        var out = values
        guarded("an all-reduce of \(values.count) values", timeout: timeout) {
            _ = MPI_Allreduce(cmpi_in_place(), &out, Int32(out.count), cmpi_double(), cmpi_sum(), comm.raw)
        }
        return out
    }

    func broadcastFloats(
        _ pointer: UnsafeMutablePointer<Float>, count: Int, root: Int, comm: MPIHandle<MPI_Comm?>, timeout: Double
    ) throws {
        var offset = 0
        while offset < count {
            let n = min(1 << 18, count - offset)
            guarded("a broadcast of \(count) floats from rank \(root)", timeout: timeout) {
                _ = MPI_Bcast(pointer + offset, Int32(n), cmpi_float(), Int32(root), comm.raw)
            }
            offset += n
        }
    }

    func allGather(_ data: Data, comm: MPIHandle<MPI_Comm?>, timeout: Double) throws -> [Data] {
        let (_, size) = rankAndSize(comm)
        var lengths = [Int64](repeating: 0, count: size)
        var mine = Int64(data.count)
        guarded("an all-gather of lengths", timeout: timeout) {
            _ = MPI_Allgather(&mine, 1, cmpi_int64(), &lengths, 1, cmpi_int64(), comm.raw)
        }
        let counts = lengths.map { Int32($0) }
        var displacements = [Int32](repeating: 0, count: size)
        for i in 1..<max(size, 1) where size > 1 { displacements[i] = displacements[i - 1] + counts[i - 1] }
        var all = [UInt8](repeating: 0, count: Int(lengths.reduce(0, +)))
        var bytes = [UInt8](data)
        guarded("an all-gather of \(data.count) bytes", timeout: timeout) {
            _ = MPI_Allgatherv(
                &bytes, Int32(bytes.count), cmpi_byte(), &all, counts, displacements, cmpi_byte(), comm.raw)
        }
        return (0..<size).map { Data(all[Int(displacements[$0])..<Int(displacements[$0] + counts[$0])]) }
    }

    func send(_ data: Data, to destination: Int, tag: Int, comm: MPIHandle<MPI_Comm?>, timeout: Double) throws {
        // MPI counts are 32-bit: a larger message would trap in the conversion below.
        guard data.count <= Int(Int32.max) else {
            throw TransportError(
                "a message of \(data.count) bytes to rank \(destination) exceeds MPI's limit of \(Int32.max) bytes")
        }
        let bytes = [UInt8](data)
        // The buffer must stay put until the send completes: the call and the wait in one closure.
        try bytes.withUnsafeBytes { buffer in
            var request: [MPI_Request?] = [cmpi_request_null()]
            MPI_Isend(
                buffer.baseAddress, Int32(buffer.count), cmpi_byte(), Int32(destination), Int32(tag), comm.raw,
                &request[0])
            try wait(
                &request, timeout: timeout, what: "rank \(destination) to receive a message (tag \(tag))",
                peers: [destination])
        }
    }

    func receive(from source: Int, tag: Int, comm: MPIHandle<MPI_Comm?>, timeout: Double) throws -> Data {
        let start = Date()
        var status = MPI_Status()
        var found: Int32 = 0
        var pause: useconds_t = 0
        var published = false
        defer { if published { RankStatus.shared.setWaiting(nil) } }
        while found == 0 {
            MPI_Iprobe(Int32(source), Int32(tag), comm.raw, &found, &status)
            if found != 0 { break }
            let waited = Date().timeIntervalSince(start)
            if waited > 0.05 && !published {
                RankStatus.shared.setWaiting("a message from rank \(source) (tag \(tag))")
                published = true
            }
            if waited > timeout {
                let what = "a message from rank \(source) (tag \(tag))"
                throw TransportError(
                    "timed out after \(Int(timeout)) s waiting for \(what)"
                        + RankStatus.joined(RankStatus.shared.absentees(waitingFor: what, among: [source])))
            }
            if waited > 0.001 {
                pause = min(max(pause * 2, 20), 2000)
                usleep(pause)
            }
        }
        var count: Int32 = 0
        MPI_Get_count(&status, cmpi_byte(), &count)
        var bytes = [UInt8](repeating: 0, count: Int(count))
        MPI_Recv(&bytes, count, cmpi_byte(), Int32(source), Int32(tag), comm.raw, cmpi_status_ignore())
        return Data(bytes)
    }

    func barrier(comm: MPIHandle<MPI_Comm?>, timeout: Double) throws {
        // Non-blocking and polled: a barrier is where ranks wait longest (rank 0 evaluating or
        // writing a checkpoint), and polling with back-off leaves the core to the others.
        var request: [MPI_Request?] = [cmpi_request_null()]
        MPI_Ibarrier(comm.raw, &request[0])
        try wait(&request, timeout: timeout, what: "every rank to reach a barrier")
    }

    func split(color: Int, key: Int, comm: MPIHandle<MPI_Comm?>, timeout: Double) throws -> MPIHandle<MPI_Comm?> {
        // MPI_Comm_split blocks with no timeout: a timed barrier first makes sure every rank is there.
        try barrier(comm: comm, timeout: timeout)
        var result: MPI_Comm? = cmpi_comm_null()
        MPI_Comm_split(comm.raw, Int32(color), Int32(key), &result)
        return MPIHandle(raw: result)
    }

    /// The ranks of `comm` that share this rank's memory (its node, as the launcher placed them).
    func splitByHost(comm: MPIHandle<MPI_Comm?>, timeout: Double) throws -> MPIHandle<MPI_Comm?> {
        try barrier(comm: comm, timeout: timeout)  // MPI_Comm_split_type blocks with no timeout
        var rank: Int32 = 0
        MPI_Comm_rank(comm.raw, &rank)
        var result: MPI_Comm? = cmpi_comm_null()
        MPI_Comm_split_type(comm.raw, cmpi_comm_type_shared(), rank, cmpi_info_null(), &result)
        return MPIHandle(raw: result)
    }
}

/// A communicator of the MPI runtime seen through the `Transport` protocol.
public final class MPITransport: Transport, @unchecked Sendable {
    let runtime: MPIRuntime
    let communicator: MPIHandle<MPI_Comm?>
    public let rank: Int, size: Int
    public let timeout: Double
    private let routeLock = NSLock()
    private var arranged: ReductionRoute?

    init(runtime: MPIRuntime, communicator: MPIHandle<MPI_Comm?>, timeout: Double) {
        self.runtime = runtime
        self.communicator = communicator
        self.timeout = timeout
        var r: Int32 = 0, s: Int32 = 0
        // Called on the MPI thread (from inside the runtime actor), so this is FUNNELED-safe.
        MPI_Comm_rank(communicator.raw, &r)
        MPI_Comm_size(communicator.raw, &s)
        rank = Int(r)
        size = Int(s)
    }

    public func allReduce(_ buffer: FloatBuffer, op: ReduceOp) async throws {
        if size > 1 {
            await runtime.allReduceSum(
                buffer.pointer, count: buffer.count, type: cmpi_float(), comm: communicator, timeout: timeout)
        }
        if op == .mean && size > 1 {
            let s = 1 / Float(size)
            for i in 0..<buffer.count { buffer.pointer[i] *= s }
        }
    }

    public func allReduce(_ sum: GradientSum, range: Range<Int>) async throws {
        if size > 1 {
            await runtime.routedSum(
                sum.pointer + range.lowerBound, count: range.count, route: route, comm: communicator, timeout: timeout)
        }
    }

    /// Queued on the MPI thread behind whatever the runtime is doing: the backward's thread only
    /// appends a closure, and the collective runs while the next layers are computed.
    public func startAllReduce(_ sum: GradientSum, range: Range<Int>) -> PendingReduction? {
        guard size > 1 else { return nil }
        let pending = PendingReduction()
        let runtime = self.runtime, comm = communicator, timeout = self.timeout, route = self.route
        let pointer = MPIHandle(raw: sum.pointer + range.lowerBound), count = range.count
        runtime.submit {
            // `sum` stays alive until MPI is done with its memory, even if the caller gave up.
            withExtendedLifetime(sum) {
                do {
                    try runtime.polledRoutedAllReduceSum(
                        pointer.raw, count: count, route: route, comm: comm, timeout: timeout)
                    pending.complete(nil)
                } catch { pending.complete(error) }
            }
        }
        return pending
    }

    /// The route gradient sums take (`cluster.reduction`), set up over this communicator: a
    /// collective, called once by every rank before the first step. Returns the line for the log.
    public func arrangeReductions(_ setting: ReductionSetting) async throws -> String? {
        guard size > 1 else { return nil }
        let (route, line) = try await runtime.makeRoute(setting, comm: communicator, timeout: timeout)
        routeLock.withLock { arranged = route }
        return line
    }

    /// The route arranged, or flat in 1 MiB messages.
    var route: ReductionRoute { routeLock.withLock { arranged ?? .flat } }

    /// Bytes per message of the route's communicator that crosses hosts (the world's when flat).
    public var messageBytes: Int { route.bucketValues * MemoryLayout<Double>.stride }

    public func allReduce(_ values: [Double], op: ReduceOp) async throws -> [Double] {
        let sum = size > 1 ? try await runtime.allReduceDoubles(values, comm: communicator, timeout: timeout) : values
        return op == .mean ? sum.map { $0 / Double(size) } : sum
    }

    public func broadcast(_ buffer: FloatBuffer, root: Int) async throws {
        if size > 1 {
            try await runtime.broadcastFloats(
                buffer.pointer, count: buffer.count, root: root, comm: communicator, timeout: timeout)
        }
    }

    public func allGather(_ data: Data) async throws -> [Data] {
        size > 1 ? try await runtime.allGather(data, comm: communicator, timeout: timeout) : [data]
    }

    public func send(_ data: Data, to destination: Int, tag: Int) async throws {
        try await runtime.send(data, to: destination, tag: tag, comm: communicator, timeout: timeout)
    }

    public func receive(from source: Int, tag: Int) async throws -> Data {
        try await runtime.receive(from: source, tag: tag, comm: communicator, timeout: timeout)
    }

    public func barrier() async throws {
        if size > 1 { try await runtime.barrier(comm: communicator, timeout: timeout) }
    }

    /// From the launcher's environment: Open MPI gives every process the number of ranks on its
    /// own node, so fewer than the world means several nodes (no collective needed).
    public var hostCount: HostCount {
        let env = ProcessInfo.processInfo.environment
        guard let local = env["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init), local > 0,
            let world = env["OMPI_COMM_WORLD_SIZE"].flatMap(Int.init), world >= local
        else {
            return HostCount(count: 1, source: "assumed: the launcher does not set OMPI_COMM_WORLD_LOCAL_SIZE")
        }
        return HostCount(
            count: (world + local - 1) / local,
            source: "\(local) of the \(world) ranks on this host, from Open MPI's environment")
    }

    public func split(color: Int, key: Int) async throws -> any Transport {
        let handle = try await runtime.split(color: color, key: key, comm: communicator, timeout: timeout)
        return await runtime.transport(for: handle, timeout: timeout)
    }

    public func hostGroup() async throws -> any Transport {
        let handle = try await runtime.splitByHost(comm: communicator, timeout: timeout)
        return await runtime.transport(for: handle, timeout: timeout)
    }
}

extension MPIRuntime {
    func routedSum(
        _ pointer: UnsafeMutablePointer<Double>, count: Int, route: ReductionRoute, comm: MPIHandle<MPI_Comm?>,
        timeout: Double
    ) {
        routedAllReduceSum(pointer, count: count, route: route, comm: comm, timeout: timeout)
    }

    func transport(for handle: MPIHandle<MPI_Comm?>, timeout: Double) -> MPITransport {
        MPITransport(runtime: self, communicator: handle, timeout: timeout)
    }
}
