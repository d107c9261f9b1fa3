import Config
import Foundation
import Kernels
import Roles

/// R2M (Huang et al., arXiv 2601.22664; LearnedRewardsR2M.swift): proxy head 1's reward token
/// fused with the policy's states, the fusion and head updated after every iteration on each
/// group's best vs worst sample. Its weight is rewards.proxy; the fused score needs the policy's
/// states on every position; its fusion and head are checkpointed.
package final class R2MSource: LearnedRewardSource {
    package static let registration = RewardSourceRegistration(
        name: "r2m", isArm: false, needs: { _ in [.lastHidden, .policyHidden] }, validate: { try validate($0) },
        isActive: { $0.rewards.selection == .r2m }
    ) { context in
        guard let learned = context.learned, learned.r2m != nil else {
            throw ConfigError("rewards.selection r2m needs 'rewards.proxy_heads' (R2M starts from head 1)")
        }
        let path = context.config.r2m.heldoutPairs
        if !path.isEmpty {
            learned.r2mHeldOut = try await R2MHeldOutPairs.load(
                path: path, tokenizer: context.tokenizer, learned: learned, scorer: context.scorer)
            context.say("r2m: \(learned.r2mHeldOut!.pairs) held-out gold-labelled pairs from \(path)")
        }
        return R2MSource(learned: learned, config: context.config)
    }
    package let name = "r2m", learned: LearnedRewards, config: RewardConfig
    package var scored: LearnedRewards.Scored?

    package init(learned: LearnedRewards, config: RewardConfig) {
        self.learned = learned
        self.config = config
    }

    /// R2M's update needs a best and a worst sample per prompt, and its reward must reach the policy.
    static func validate(_ c: RewardConfig) throws {
        guard c.samplesPerPrompt > 1 else {
            throw ConfigError(
                "rewards.selection r2m updates on each prompt's best vs worst sample: set ppo.samples_per_prompt ≥ 2")
        }
        guard !c.laser.arms.isEmpty || c.rewards.proxy != 0 else {
            throw ConfigError(
                "rewards.selection r2m makes the proxy reward, but rewards.proxy is 0: it would never reach the policy")
        }
    }

    package func update(_ u: RewardUpdate) async throws -> [String: Double] {
        guard let scored else { return [:] }
        return try await learned.updateR2M(
            iteration: u.iteration, scored: scored, sequences: u.sequences, groupSize: u.groupSize, policy: u.policy,
            replicas: u.replicas)
    }
}
