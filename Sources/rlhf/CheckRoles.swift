import ArgumentParser
import Cluster
import Foundation
import Kernels
import Models
import Roles

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Diagnostics for a cluster set-up.", subcommands: [CheckRoles.self])
}

struct CheckRoles: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "roles",
        abstract: "Place the reference and reward roles as given and check they answer exactly as colocated roles do.",
        discussion:
            "Run under mpirun, e.g. `mpirun -np 2 rlhf check roles --placement reference=1,reward=1`. Rank 0 prints "
            + "one JSON line."
    )

    @Option(help: "Model folder; default: a tiny model initialised from --seed on every rank.")
    var model: String?
    @Option(help: "Role placement: colocated, or role=rank pairs such as reference=1,reward=1.")
    var placement: String = "reference=1,reward=1"
    @Option(help: "Random sequences to score.")
    var sequences: Int = 16
    @Option(help: "Seed of the model (without --model), the reward head and the sequences.")
    var seed: UInt64 = 1
    @Option(help: "Seconds any wait for another rank may last.")
    var timeout: Double = defaultTransportTimeout

    func run() async throws {
        let world = await MPIRuntime.shared.world(timeout: timeout)
        let context = FailureContext(rank: world.rank, role: "check", step: 0)
        try await failingLoudly(world, context: { context }) {
            let placed = try Placement.parse(placement, worldSize: world.size)
            let trunk: any CausalLM
            if let model {
                trunk = try HFCheckpoint.load(directory: model)
            } else {
                trunk = try ModelFamilies.preset("tiny").makeModel(weights: nil)
                var rng = RNG(seed: seed)
                trunk.initialize(rng: &rng)
            }
            let head = ScalarHead(channels: trunk.config.channels)
            var rng = RNG(seed: seed &+ 1)
            head.initialize(rng: &rng)
            let reference = LocalReference(trunk: trunk), reward = LocalReward(trunk: trunk, head: head)
            if world.rank == 0 {
                log("roles: \(placed); \(BLAS.summary)")
                let batch = (0..<sequences).map { i in
                    (0..<(4 + i % 9)).map { _ in Int32(rng.next() % UInt64(trunk.config.vocabSize)) }
                }
                let clients = Dictionary(
                    uniqueKeysWithValues: placed.servers.keys.map { ($0, RoleClient(transport: world, host: $0)) })
                let placedReference: any ReferenceRole =
                    placed.remote[.reference].map { RemoteReference(clients[$0]!) } ?? reference
                let placedReward: any RewardRole = placed.remote[.reward].map { RemoteReward(clients[$0]!) } ?? reward
                let (lp1, lp2) = (try await reference.logProbs(batch), try await placedReference.logProbs(batch))
                let (s1, s2) = (try await reward.scores(batch), try await placedReward.scores(batch))
                for client in clients.values { try await client.stop() }
                let lpDiff = zip(lp1.joined(), lp2.joined()).map { abs($0 - $1) }.max() ?? 0
                let sDiff = zip(s1, s2).map { abs($0 - $1) }.max() ?? 0
                let identical = lp1 == lp2 && s1 == s2
                printJSONLine([
                    "placement": placed.description, "sequences": sequences, "reference_max_diff": Double(lpDiff),
                    "reward_max_diff": Double(sDiff), "identical": identical, "world_size": world.size,
                ])
                if !identical { throw CLIError("placed roles disagree with colocated ones") }
            } else if let hosted = placed.servers[world.rank] {
                try await RoleServer(
                    transport: world, reference: hosted.contains(.reference) ? reference : nil,
                    reward: hosted.contains(.reward) ? reward : nil
                ).serve()
            }
            try await world.barrier()
        }
    }
}
