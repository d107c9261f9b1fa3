import Alignment
import Cluster
import Config
import Foundation
import Kernels
import Models
import Roles

/// PPO's learned proxy rewards on the frozen Hydra trunk (issue 7): reward heads read at the
/// last token of the adapters-off pass, combined per batch in one of four ways —
/// `mean` (the ensemble), `laser` (LinUCB picks one arm per batch from the policy's prompt
/// states; Nguyen et al. 2024, LearnedRewardsLaser.swift), `random` (a uniformly random arm per
/// batch, LASeR's baseline) or `r2m` (head 1's reward token fused with the policy's states and
/// updated after every iteration; Huang et al. 2026, LearnedRewardsR2M.swift).
package final class LearnedRewards {
    package let names: [String]
    /// The trunk's width C (the bandit's context and R2M's states).
    package let channels: Int
    package let heads: [ScalarHead]
    /// A proxy's own trunk when it was fine-tuned with its head; nil: the head reads the shared
    /// frozen trunk's adapters-off pass (the Hydra way, no extra forward).
    package let trunks: [(any CausalLM)?]
    package let selection: RewardSelection
    package var bandit: LinUCB?
    package let laser: LaserSettings
    package let r2m: R2MFusion?
    package let r2mSettings: R2MSettings
    package let r2mOptimizer: AdamW?
    package let r2mGradients: FloatBuffer?
    /// θ₀: the fusion and head as built (r2m.anchor pulls toward them).
    package let r2mStart: [Float]?
    /// Gold-labelled held-out pairs whose accuracy under the fused reward is logged (r2m.heldout_pairs).
    package var r2mHeldOut: R2MHeldOutPairs?
    /// ppo.iterations (R2M's T) and run.seed (the random baseline's draws).
    package let iterations: Int, seed: UInt64
    /// The arm chosen for the current batch and its context.
    package var pending: (arm: Int, context: [Double])?
    package var previousEnsembleMean: Double?

    /// LASeR's arms: the proxy heads by default, or any named reward sources (laser.arms).
    package let armNames: [String]
    package var explicitArms: Bool { armNames != names }

    package init(
        names: [String], heads: [ScalarHead], trunks: [(any CausalLM)?], channels: Int, selection: RewardSelection,
        arms: [String]? = nil,
        laser: LaserSettings, r2m: R2MFusion?, r2mSettings: R2MSettings, iterations: Int, seed: UInt64
    ) {
        precondition(names.count == heads.count && (!heads.isEmpty || !(arms ?? []).isEmpty))
        self.names = names
        self.channels = channels
        self.heads = heads
        self.trunks = trunks
        self.selection = selection
        self.laser = laser
        armNames = arms ?? names
        bandit =
            selection == .laser
            ? LinUCB(
                dimension: channels, arms: armNames.count, alpha: laser.alpha, rawFirstReward: laser.rawFirstReward)
            : nil
        self.r2m = r2m
        self.r2mSettings = r2mSettings
        r2mOptimizer = r2m.map {
            AdamW(layout: $0.layout, hyper: AdamWHyperparameters(learningRate: r2mSettings.lr, weightDecay: 0))
        }
        r2mGradients = r2m.map { FloatBuffer(count: $0.parameters.count) }
        r2mStart = r2m?.parameters.array
        self.iterations = iterations
        self.seed = seed
    }

    /// LASeR needs the policy's prompt states; R2M its states over every sequence.
    package var needsPolicyHidden: Bool { r2m != nil || bandit != nil }
    /// Whether an arm is chosen per batch (laser or random).
    package var choosesArms: Bool { selection == .laser || selection == .random }

    /// Each proxy's last-token states [K][N][C]: the shared pass's, or its own trunk's.
    package func proxyStates(_ sequences: [[Int32]], shared: [[Float]]) throws -> [[[Float]]] {
        try trunks.map { trunk in try trunk.map { try $0.lastHiddenStates(sequences) } ?? shared }
    }

    /// Scores of every head [K][N] from its last-token states.
    package func headScores(_ states: [[[Float]]]) -> [[Double]] {
        zip(heads, states).map { h, last in h.forward(hidden: last.flatMap { $0 }, rows: last.count).map(Double.init) }
    }

    /// The proxy reward of each sequence, and the arm chosen (nil for mean and r2m).
    package func rewards(
        iteration: Int, scores: [[Double]], lastHidden: [[Float]], policyHidden: [[Float]], promptLengths: [Int],
        channels: Int, replicas: (any Transport)?
    ) async throws -> (values: [Double], arm: Int?) {
        if choosesArms {
            let arm: Int
            if let bandit {
                let x = try await context(
                    policyHidden: policyHidden, promptLengths: promptLengths, channels: channels, replicas: replicas)
                arm = laser.tryEachArmFirst && iteration <= bandit.arms ? iteration - 1 : bandit.select(x)
                pending = (arm, x)
            } else {
                // The random baseline: the same seeded draw on every rank.
                var rng = RNG(seed: seed &+ 0x7A4D &+ UInt64(iteration) &* 0x9E37)
                arm = Int(rng.next() % UInt64(armNames.count))
            }
            // Named arms: the stage takes the chosen source's values; the proxy is the heads' mean.
            if explicitArms { return (ensemble(scores, count: lastHidden.count), arm) }
            return (scores[arm], arm)
        }
        if let r2m {
            let omega = r2mOmega(iteration: iteration)
            return (
                lastHidden.indices.map { i in
                    Double(
                        r2m.forward(
                            rewardHidden: lastHidden[i],
                            policyHidden: attendedStates(policyHidden[i], channels: channels), omega: omega
                        ).reward)
                }, nil
            )
        }
        return (ensemble(scores, count: lastHidden.count), nil)
    }

    /// The heads' mean score per sequence (zeros without heads).
    package func ensemble(_ scores: [[Double]], count: Int) -> [Double] {
        (0..<count).map { i in scores.isEmpty ? 0 : scores.reduce(0) { $0 + $1[i] } / Double(scores.count) }
    }
}

/// What a PPO checkpoint keeps of the learned rewards: the bandit, and R2M's parameters and moments.
extension LearnedRewards {
    package struct State: Codable {
        var bandit: LinUCB?
        var previousEnsembleMean: Double?
        var r2mStep: Int?
    }
    package static let stateFile = "learned_rewards.json"

    /// R2M's parameters and moments, saved with the roles' in ppo_state.safetensors.
    package func snapshots() -> [String: TrainableSnapshot] {
        guard let r2m, let o = r2mOptimizer else { return [:] }
        return ["r2m": TrainableSnapshot(parameters: r2m.parameters.array, m: o.m.array, v: o.v.array, step: o.step)]
    }

    /// The bandit and its last held-out score, as learned_rewards.json in a checkpoint folder.
    package func writeState(directory: String) throws {
        let state = State(bandit: bandit, previousEnsembleMean: previousEnsembleMean, r2mStep: r2mOptimizer?.step)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        try encoder.encode(state).write(
            to: URL(fileURLWithPath: (directory as NSString).appendingPathComponent(Self.stateFile)))
    }

    package func restore(directory: String, snapshots: [String: TrainableSnapshot]) throws {
        let path = (directory as NSString).appendingPathComponent(Self.stateFile)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TrainingError("\(path): missing (the checkpoint has no learned-reward state)")
        }
        let state = try JSONDecoder().decode(State.self, from: data)
        bandit = state.bandit
        previousEnsembleMean = state.previousEnsembleMean
        if let r2m, let o = r2mOptimizer {
            guard let s = snapshots["r2m"], s.parameters.count == r2m.parameters.count else {
                throw TrainingError("\(directory): no R2M state")
            }
            s.parameters.withUnsafeBufferPointer {
                r2m.parameters.pointer.update(from: $0.baseAddress!, count: $0.count)
            }
            try o.restore(m: s.m, v: s.v, step: s.step)
        }
    }
}
