import Cluster
import Foundation
import Kernels
import Models

/// Frozen weights kept once per machine (docs/architecture.md §13). The ranks of a host would each
/// hold the same frozen trunk (Hydra's, a reference, a reward model); instead the host's first
/// rank puts its weights, and in bf16 their bf16 rounding, in one shared segment, and every rank of
/// the host builds its trunk over that segment (the others map it read-only and load nothing).
/// Trainable state (adapters, heads, optimizer) stays each rank's own. Without a host group of
/// several ranks nothing is shared and the trunk is the one loaded.
public enum HostWeights {
    /// Segment names in /dev/shm: `rlhf-weights-<pid of the creator>-<random>-<n>` (the random part:
    /// containers sharing /dev/shm may reuse a pid).
    static let prefix = "rlhf-weights-"
    private static let names = NameCounter()

    /// A frozen trunk in `precision`: `load` runs on the host's first rank only; the other ranks
    /// build the trunk of `config` over the first rank's segment.
    public static func frozen(
        host: (any Transport)?, precision: Precision, config: () throws -> any ModelConfiguration,
        load: () throws -> any CausalLM
    ) async throws -> any CausalLM {
        guard let host, host.size > 1 else {
            let trunk = try load()
            trunk.use(precision, frozen: true)
            return trunk
        }
        if host.rank == 0 {
            return try await publish(host: host) {
                let trunk = try load()
                trunk.use(precision, frozen: true)
                return trunk
            }
        }
        return try await attach(host: host, config: config)
    }

    /// `trunk`, frozen and built alike on every rank of the host (same seed, same file), kept once:
    /// the first rank's values go to a segment and every rank's trunk is rebuilt over it. Call it
    /// before anything else holds `trunk`, so that the rank's own copy is freed.
    public static func share(_ trunk: any CausalLM, host: (any Transport)?) async throws -> any CausalLM {
        guard let host, host.size > 1 else { return trunk }
        if host.rank == 0 { return try await publish(host: host) { trunk } }
        return try await attach(host: host) { trunk.config }
    }

    /// `keepOnlyBF16` on a trunk the host's ranks share: every rank stops reading the fp32 values of
    /// the matrices, and once all of them are past their last such read (their clones are made)
    /// the first rank gives the pages back for the whole host.
    public static func keepOnlyBF16(_ trunk: any CausalLM, host: (any Transport)?) async throws {
        if trunk.weights.holder != nil, let host, host.size > 1 { try await host.barrier() }
        trunk.keepOnlyBF16()
    }

    /// Said at start: how the ranks of the host keep `trunk` (nil for a rank of its own).
    public static func summary(_ trunk: any CausalLM, host: (any Transport)?) -> String? {
        guard let host, host.size > 1, let segment = trunk.weights.holder else { return nil }
        return "frozen weights kept once for the \(host.size) ranks of this host: "
            + String(format: "%.1f MiB in /dev/shm", Double(segment.residentBytes) / 1_048_576)
    }

    /// What the host's first rank tells the others: where its segment is, or why there is none.
    struct Announcement: Codable {
        var name = "", count = 0, bf16 = false
        var failure: String?
        /// The bf16 copy starts on a page after the fp32 weights.
        var bf16Offset: Int { (count * 4 + 4095) / 4096 * 4096 }
        var bytes: Int { bf16 ? bf16Offset + count * 2 : count * 4 }
    }

    /// The first rank: builds the trunk (`make`), copies it into a new segment, rebuilds it over
    /// the segment and tells the others where it is; unlinks it once they have mapped it.
    static func publish(host: any Transport, make: () throws -> any CausalLM) async throws -> any CausalLM {
        var announcement = Announcement()
        var built: (any CausalLM, SharedSegment)?
        do {
            built = try copyIntoSegment(make, announcement: &announcement)
        } catch {
            announcement.failure = "\(error)"
        }
        // The name goes whatever happens next: once every rank has mapped it, or with the error.
        defer { built?.1.unlink() }
        _ = try await host.allGather(JSONEncoder().encode(announcement))
        if let failure = announcement.failure { throw HostWeightsError.loading(failure) }
        try HostWeightsError.check(try await host.allGather(Data()))  // every rank has mapped it, or says why not
        guard let (trunk, _) = built else { throw HostWeightsError.loading("no trunk") }
        return trunk
    }

    /// The trunk `make` builds, moved into a segment: fp32 weights at the start, the bf16 copy (in
    /// bf16) a page after. The built trunk's own memory goes when this returns.
    static func copyIntoSegment(_ make: () throws -> any CausalLM, announcement: inout Announcement) throws
        -> (any CausalLM, SharedSegment)
    {
        let built = try make()
        let precision = built.precision
        announcement.name = "/\(prefix)\(getpid())-\(UInt32.random(in: 0...UInt32.max))-\(names.next())"
        announcement.count = built.weights.count
        announcement.bf16 = built.bf16Copy != nil
        SharedSegment.removeStale(prefix: prefix)
        let segment = try SharedSegment.create(name: announcement.name, bytes: announcement.bytes)
        var kept = false
        defer { if !kept { segment.unlink() } }
        FloatBuffer(in: segment, offset: 0, count: built.weights.count).copy(from: built.weights)
        let copy = built.bf16Copy.map { made in
            let shared = BFloat16Buffer(in: segment, offset: announcement.bf16Offset, count: made.count)
            shared.pointer.update(from: made.pointer, count: made.count)
            return shared
        }
        let trunk = try trunk(over: segment, announcement, config: built.config, precision: precision, copy: copy)
        kept = true
        return (trunk, segment)
    }

    /// Another rank of the host: the trunk of `config` over the first rank's segment. Whether it
    /// could map it or not, it says so to the host, so no rank waits for one that has failed.
    static func attach(host: any Transport, config: () throws -> any ModelConfiguration) async throws
        -> any CausalLM
    {
        let first = try await host.allGather(Data())[0]
        let announcement = try JSONDecoder().decode(Announcement.self, from: first)
        if let failure = announcement.failure { throw HostWeightsError.loading(failure) }
        var result: Result<any CausalLM, Error>
        do {
            result = .success(try map(announcement, config: try config()))
        } catch {
            result = .failure(error)
        }
        var status = Data()
        if case .failure(let error) = result { status = Data("\(error)".utf8) }
        try HostWeightsError.check(try await host.allGather(status))
        return try result.get()
    }

    static func map(_ announcement: Announcement, config: any ModelConfiguration) throws -> any CausalLM {
        guard announcement.count == config.parameterCount else {
            throw HostWeightsError(
                "the host's shared weights hold \(announcement.count) values, this rank's model "
                    + "\(config.parameterCount): ranks of one host load different models")
        }
        let segment = try SharedSegment.open(name: announcement.name, bytes: announcement.bytes)
        let copy =
            announcement.bf16
            ? BFloat16Buffer(in: segment, offset: announcement.bf16Offset, count: announcement.count) : nil
        return try trunk(
            over: segment, announcement, config: config, precision: copy == nil ? .fp32 : .bf16, copy: copy)
    }

    static func trunk(
        over segment: SharedSegment, _ announcement: Announcement, config: any ModelConfiguration,
        precision: Precision, copy: BFloat16Buffer?
    ) throws -> any CausalLM {
        let trunk = try config.makeModel(weights: FloatBuffer(in: segment, offset: 0, count: announcement.count))
        trunk.useFrozen(precision, copy: copy)
        return trunk
    }
}

public struct HostWeightsError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }

    static func loading(_ reason: String) -> HostWeightsError {
        HostWeightsError("rank 0 of the host could not load the frozen weights it shares: \(reason)")
    }

    /// Throws the first failure the host's ranks reported (an empty status is success).
    static func check(_ statuses: [Data]) throws {
        guard let rank = statuses.firstIndex(where: { !$0.isEmpty }) else { return }
        throw HostWeightsError(
            "rank \(rank) of the host could not map the shared frozen weights: "
                + String(decoding: statuses[rank], as: UTF8.self))
    }
}

/// Numbers for segment names, unique within the process.
private final class NameCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func next() -> Int {
        lock.withLock {
            value += 1
            return value
        }
    }
}
