import Alignment
import Cluster
import Config
import Foundation
import Roles

/// The learned proxy reward (rewards.proxy_heads): the heads' mean or LASeR's pick, computed from
/// the scoring passes' states; LASeR's bandit is checkpointed and learns after each iteration.
/// (rewards.selection r2m makes the `r2m` source instead.)
package final class ProxySource: LearnedRewardSource {
    /// Active whenever learned rewards are (heads, or LASeR over named sources), R2M aside.
    package static let registration = RewardSourceRegistration(
        name: "proxy", isArm: false,
        needs: { $0.rewards.selection == .laser ? [.lastHidden, .policyHidden] : [.lastHidden] },
        validate: { try validate($0) },
        isActive: { (!$0.rewards.proxyHeads.isEmpty || !$0.laser.arms.isEmpty) && $0.rewards.selection != .r2m }
    ) { try await make($0) }

    package let name = "proxy", learned: LearnedRewards, config: RewardConfig
    package var scored: LearnedRewards.Scored?
    /// LASeR's held-out prompts and the end-of-sequence token (laser.reward heldout).
    let heldOutPrompts: [[Int32]], eosTokenId: Int32?

    init(learned: LearnedRewards, config: RewardConfig, heldOutPrompts: [[Int32]], eosTokenId: Int32?) {
        self.learned = learned
        self.config = config
        self.heldOutPrompts = heldOutPrompts
        self.eosTokenId = eosTokenId
    }

    /// Settings that would train and log but never reach the policy are refused at load.
    static func validate(_ c: RewardConfig) throws {
        if c.rewards.selection == .laser && c.laser.signal == .dpoNLL && c.samplesPerPrompt < 2 {
            throw ConfigError(
                "laser.reward dpo_nll pays the bandit on each prompt's best vs worst sample: set "
                    + "ppo.samples_per_prompt ≥ 2"
            )
        }
        if [.laser, .random].contains(c.rewards.selection) && c.laser.arms.isEmpty && c.rewards.proxy == 0 {
            throw ConfigError(
                "rewards.selection \(c.rewards.selection.rawValue) makes the proxy reward, but rewards.proxy is 0: "
                    + "it would never reach the policy"
            )
        }
    }

    /// LASeR scoring held-out replies starts from the SFT policy's score, taken once here.
    static func make(_ context: RewardSourceContext) async throws -> ProxySource {
        guard let learned = context.learned else {
            throw ConfigError("rewards.proxy_heads are set but no learned reward was built")
        }
        let cfg = context.config
        if learned.bandit != nil && cfg.laser.signal == .heldout {
            guard !context.heldOutPrompts.isEmpty else {
                throw ConfigError("laser.reward heldout needs held-out prompts (data.eval, or a task)")
            }
            if learned.previousEnsembleMean == nil {
                learned.previousEnsembleMean = try await learned.heldOutScore(
                    context.heldOutPrompts, policy: context.localPolicy, scorer: context.scorer,
                    maxNewTokens: cfg.maxNewTokens, eosTokenId: context.tokenizer.eosTokenId)
            }
        }
        return ProxySource(
            learned: learned, config: cfg, heldOutPrompts: context.heldOutPrompts,
            eosTokenId: context.tokenizer.eosTokenId)
    }

    /// An arm chosen (laser, random) over named sources: this batch's reward is that source alone.
    package func chosenTotal(_ rewards: RewardBreakdown) -> [Double]? {
        guard learned.explicitArms, var s = scored, let arm = s.arm else { return nil }
        if s.armScores == nil { s.armScores = rewards.bySource[learned.armNames[arm]] }
        scored = s
        return s.armScores
    }

    /// LASeR's bandit learns from the iteration's signal: −(DPO + NLL) on the arm's best-vs-worst
    /// pairs (the paper's), or the held-out gain. Logged: the raw and normalised bandit reward.
    package func update(_ u: RewardUpdate) async throws -> [String: Double] {
        guard let scored, learned.bandit != nil else { return [:] }
        switch config.laser.signal {
        case .heldout:
            let score = try await learned.heldOutScore(
                heldOutPrompts, policy: u.policy, scorer: u.scorer, maxNewTokens: config.maxNewTokens,
                eosTokenId: eosTokenId)
            let gain = score - (learned.previousEnsembleMean ?? score)
            let normalised = learned.finishIteration(signal: gain, heldOut: score)
            return ["laser_heldout_score": score, "laser_reward": gain, "laser_reward_normalised": normalised ?? 0]
        case .dpoNLL:
            let paid = try await learned.laserPairReward(
                scored: scored, old: u.oldLogProbs, sequences: u.sequences, promptLengths: u.promptLengths,
                groupSize: u.groupSize, policy: u.policy, replicas: u.replicas)
            let normalised = learned.finishIteration(signal: paid?.reward, heldOut: nil)
            // No pair (every group tied under the arm): the bandit is not paid this iteration.
            guard let paid, let normalised else { return ["laser_pairs": 0] }
            return [
                "laser_pairs": Double(paid.pairs), "laser_reward": paid.reward, "laser_reward_normalised": normalised,
            ]
        }
    }
}

/// A source whose value comes from the learned reward models (`LearnedRewards`: heads, LASeR's
/// bandit, R2M's fusion), which keep and checkpoint the state. Both are weighted by rewards.proxy.
package protocol LearnedRewardSource: RewardSource {
    var learned: LearnedRewards { get }
    var config: RewardConfig { get }
    /// The batch last prepared.
    var scored: LearnedRewards.Scored? { get set }
}

extension LearnedRewardSource {
    package var weight: Double { config.rewards.proxy }

    package func prepare(_ batch: RewardBatch, replicas: (any Transport)?) async throws {
        scored = try await learned.score(batch, replicas: replicas)
    }

    package func scores(_ batch: RewardBatch) throws -> [Double] {
        guard let values = scored?.proxy else {
            throw TrainingError("\(name) reward: the batch was scored without the learned heads")
        }
        return values
    }

    /// The heads' mean whatever the selection picked, and the arm it picked.
    package func sums(_ batch: RewardBatch, gold: [Double]) -> NamedSums {
        NamedSums(["proxy_ensemble": learned.ensemble(scored?.perHead ?? [], count: batch.sequences.count).reduce(0, +)]
        )
    }

    package func figures(_ sums: NamedSums, samples: Double) -> [String: Double] {
        var figures = ["proxy_ensemble_mean": sums["proxy_ensemble"] / samples]
        if let arm = scored?.arm { figures["laser_arm"] = Double(arm) }
        return figures
    }

    package func snapshots() -> [String: TrainableSnapshot] { learned.snapshots() }
    package func restore(directory: String, snapshots: [String: TrainableSnapshot]) throws {
        try learned.restore(directory: directory, snapshots: snapshots)
    }
    package func writeState(directory: String) throws { try learned.writeState(directory: directory) }
}
