import Alignment
import Config
import Foundation
import Roles
import Runs

/// The learned proxy reward (rewards.proxy_heads): the heads' mean or LASeR's pick, as the
/// learned-reward pass computed it; LASeR's bandit is checkpointed and learns after each iteration.
/// (rewards.selection r2m makes the `r2m` source instead.)
package final class ProxySource: LearnedRewardSource {
    /// Active whenever learned rewards are (heads, or LASeR over named sources), R2M aside.
    package static let registration = RewardSourceRegistration(name: "proxy", isActive: {
        (!$0.rewards.proxyHeads.isEmpty || !$0.laser.arms.isEmpty) && $0.rewards.selection != .r2m
    }) { context in
        guard let learned = context.learned else { throw ConfigError("rewards.proxy_heads are set but no learned reward was built") }
        return ProxySource(learned: learned, config: context.config)
    }
    package let name = "proxy", learned: LearnedRewards, config: RewardConfig
    package init(learned: LearnedRewards, config: RewardConfig) { self.learned = learned; self.config = config }

    /// LASeR's bandit learns from the iteration's signal: −(DPO + NLL) on the arm's best-vs-worst
    /// pairs (the paper's), or the held-out gain. Logged: the raw and normalised bandit reward.
    package func update(_ u: RewardUpdate) async throws -> [String: Double] {
        guard let scored = u.scored, learned.bandit != nil else { return [:] }
        switch config.laser.signal {
        case .heldout:
            let score = try await learned.heldOutScore(u.heldOutPrompts, policy: u.policy, scorer: u.scorer, maxNewTokens: config.maxNewTokens, eosTokenId: u.eosTokenId)
            let gain = score - (learned.previousEnsembleMean ?? score)
            let normalised = learned.finishIteration(signal: gain, heldOut: score)
            return ["laser_heldout_score": score, "laser_reward": gain, "laser_reward_normalised": normalised ?? 0]
        case .dpoNLL:
            let paid = try await learned.laserPairReward(scored: scored, sequences: u.sequences, promptLengths: u.promptLengths, groupSize: u.groupSize,
                                                         policy: u.policy, replicas: u.replicas)
            let normalised = learned.finishIteration(signal: paid?.reward, heldOut: nil)
            // No pair (every group tied under the arm): the bandit is not paid this iteration.
            guard let paid, let normalised else { return ["laser_pairs": 0] }
            return ["laser_pairs": Double(paid.pairs), "laser_reward": paid.reward, "laser_reward_normalised": normalised]
        }
    }
}

/// A source whose value the learned-reward pass computes (`RewardBatch.proxy`) and whose state
/// (LASeR's bandit, R2M's fusion) `LearnedRewards` keeps and checkpoints.
/// Both are weighted by rewards.proxy.
package protocol LearnedRewardSource: RewardSource {
    var learned: LearnedRewards { get }
    var config: RewardConfig { get }
}

extension LearnedRewardSource {
    package var weight: Double { config.rewards.proxy }
    package func scores(_ batch: RewardBatch) throws -> [Double] {
        guard let values = batch.proxy else { throw TrainingError("\(name) reward: the batch was scored without the learned heads") }
        return values
    }
    package func snapshots() -> [String: TrainableSnapshot] { learned.snapshots() }
    package func restore(directory: String, snapshots: [String: TrainableSnapshot]) throws { try learned.restore(directory: directory, snapshots: snapshots) }
    package func writeState(directory: String) throws { try learned.writeState(directory: directory) }
}
