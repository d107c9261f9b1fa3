import Config
import Foundation
import Kernels
import Roles
import Runs

/// R2M (Huang et al., arXiv 2601.22664; LearnedRewardsR2M.swift): proxy head 1's reward token
/// fused with the policy's states, the fusion and head updated after every iteration on each
/// group's best vs worst sample. Its weight is rewards.proxy; the fused score is computed on the
/// learned-reward pass (it needs the policy's states); its fusion and head are checkpointed.
package final class R2MSource: LearnedRewardSource {
    package static let registration = RewardSourceRegistration(name: "r2m", isActive: { $0.rewards.selection == .r2m }) { context in
        guard let learned = context.learned, learned.r2m != nil else { throw ConfigError("rewards.selection r2m needs 'rewards.proxy_heads' (R2M starts from head 1)") }
        return R2MSource(learned: learned, config: context.config)
    }
    package let name = "r2m", learned: LearnedRewards, config: RewardConfig
    package init(learned: LearnedRewards, config: RewardConfig) { self.learned = learned; self.config = config }

    package func update(_ u: RewardUpdate) async throws -> [String: Double] {
        guard let scored = u.scored else { return [:] }
        return try await learned.updateR2M(iteration: u.iteration, scored: scored, sequences: u.sequences, groupSize: u.groupSize, policy: u.policy, replicas: u.replicas)
    }
}
