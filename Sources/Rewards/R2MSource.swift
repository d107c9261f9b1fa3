import Config
import Foundation
import Kernels
import Roles
import Runs

/// R2M (Huang et al. 2026, algorithms.md §7): proxy head 1's state fused with the policy's
/// response states, updated online every r2m.every iterations from replayed preference pairs and
/// this batch. Its weight is rewards.proxy; the fused score is computed on the learned-reward
/// pass (it needs the policy's states); its fusion and head are checkpointed.
package final class R2MSource: LearnedRewardSource {
    package static let registration = RewardSourceRegistration(name: "r2m", isActive: { $0.rewards.selection == .r2m }) { context in
        guard let learned = context.learned, learned.r2m != nil else { throw ConfigError("rewards.selection r2m needs 'rewards.proxy_heads' (R2M starts from head 1)") }
        return R2MSource(learned: learned, config: context.config)
    }
    package let name = "r2m", learned: LearnedRewards, config: RewardConfig
    package init(learned: LearnedRewards, config: RewardConfig) { self.learned = learned; self.config = config }

    /// The online update on r2m.replay pairs drawn (seeded by the iteration) from the replay set.
    package func update(_ u: RewardUpdate) async throws -> [String: Double] {
        guard let scored = u.scored, u.iteration % config.r2m.every == 0 else { return [:] }
        let pairs = u.replayPairs
        var replayRNG = RNG(seed: config.seed &+ 0x2E9 &+ UInt64(u.iteration))
        let replay = (0..<min(config.r2m.replay, pairs.count)).map { _ in pairs[Int(replayRNG.next() % UInt64(pairs.count))] }
        let (pairLoss, anchorLoss) = try await learned.updateR2M(iteration: u.iteration, replay: replay, scored: scored, promptLengths: u.promptLengths,
                                                                 scorer: u.scorer, policy: u.policy, anchor: config.r2m.anchor,
                                                                 learningRate: config.r2m.lr, replicas: u.replicas)
        return ["r2m_pair_loss": pairLoss, "r2m_anchor_loss": anchorLoss, "r2m_weight": learned.r2mWeight(iteration: u.iteration)]
    }
}
