/// Which rank hosts which role (docs/architecture.md §4). `colocated` (the default): every rank hosts every
/// role over its own trunk and rank 0 drives. Explicit: `reference=1,reward=1` puts those roles
/// on rank 1 (reached through remote proxies); unnamed roles stay with the controller.
public struct Placement: Sendable, Equatable, CustomStringConvertible {
    /// Host rank of each role placed away from the controller.
    public let remote: [RoleKind: Int]
    public let worldSize: Int

    public static func colocated(worldSize: Int) -> Placement { Placement(remote: [:], worldSize: worldSize) }

    public init(remote: [RoleKind: Int], worldSize: Int) {
        self.remote = remote
        self.worldSize = worldSize
    }

    /// Parses `colocated` or `role=rank[,role=rank…]`.
    public static func parse(_ spec: String, worldSize: Int) throws -> Placement {
        if spec == "colocated" || spec.isEmpty { return .colocated(worldSize: worldSize) }
        var remote: [RoleKind: Int] = [:]
        for item in spec.split(separator: ",") {
            let parts = item.split(separator: "=")
            guard parts.count == 2,
                let role = RoleKind(rawValue: String(parts[0]).trimmingCharacters(in: .whitespaces)),
                let rank = Int(String(parts[1]).trimmingCharacters(in: .whitespaces))
            else {
                throw RoleError(
                    "placement '\(item)': expected role=rank with role one of "
                        + "\(RoleKind.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            guard rank >= 0 && rank < worldSize else {
                throw RoleError("placement '\(item)': rank \(rank) is outside the world of \(worldSize)")
            }
            guard remote[role] == nil else { throw RoleError("placement names \(role.rawValue) twice") }
            if rank != 0 { remote[role] = rank }
        }
        return Placement(remote: remote, worldSize: worldSize)
    }

    /// Ranks other than the controller that host something, with what they host.
    public var servers: [Int: [RoleKind]] {
        var out: [Int: [RoleKind]] = [:]
        for role in RoleKind.allCases { if let rank = remote[role] { out[rank, default: []].append(role) } }
        return out
    }

    /// The role → rank map printed at start.
    public var description: String {
        RoleKind.allCases.map { role in
            "\(role.rawValue) → "
                + (remote[role].map { "rank \($0)" }
                    ?? (worldSize > 1 && remote.isEmpty ? "every rank (colocated)" : "rank 0"))
        }.joined(separator: ", ")
    }
}
