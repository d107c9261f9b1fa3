import Alignment
import Config
import Foundation
import Kernels
import Roles

/// The reward head's score of each response, read on the scoring pass (Hydra: the same
/// adapters-off pass as the reference log-probs). Always computed, so always logged.
final class RewardHeadSource: RewardSource {
    static let registration = RewardSourceRegistration(name: "reward_head", isActive: { _ in true }) { RewardHeadSource(weight: $0.config.rewards.rewardHead) }
    let name = "reward_head", weight: Double
    init(weight: Double) { self.weight = weight }
    func scores(_ batch: RewardBatch) throws -> [Double] { batch.headScores }
}

/// 1 when the response's final number is the prompt's answer (ExactAnswerVerifier). Half of the
/// gold reward, so always computed.
final class VerifierSource: RewardSource {
    static let registration = RewardSourceRegistration(name: "verifier", isActive: { _ in true }) { VerifierSource(weight: $0.config.rewards.verifier) }
    let name = "verifier", weight: Double
    init(weight: Double) { self.weight = weight }
    func scores(_ batch: RewardBatch) throws -> [Double] { zip(batch.texts, batch.answers).map { ExactAnswerVerifier().score(response: $0, answer: $1) } }
}

/// 0 for a bare integer, −1 otherwise (IntegerFormatVerifier). The other half of the gold reward.
final class FormatSource: RewardSource {
    static let registration = RewardSourceRegistration(name: "format", isActive: { _ in true }) { FormatSource(weight: $0.config.rewards.format) }
    let name = "format", weight: Double
    init(weight: Double) { self.weight = weight }
    func scores(_ batch: RewardBatch) throws -> [Double] { batch.texts.map { IntegerFormatVerifier().score(response: $0, answer: nil) } }
}

/// The learned proxy reward (rewards.proxy_heads): the heads' mean, LASeR's pick or R2M's fused
/// score, as the learned-reward pass computed it; its state (R2M, the bandit) is checkpointed.
final class ProxySource: RewardSource {
    /// Active whenever learned rewards are (heads, or LASeR over named sources).
    static let registration = RewardSourceRegistration(name: "proxy", isActive: { !$0.rewards.proxyHeads.isEmpty || !$0.laser.arms.isEmpty }) { context in
        guard let learned = context.learned else { throw ConfigError("rewards.proxy_heads are set but no learned reward was built") }
        return ProxySource(learned: learned, weight: context.config.rewards.proxy)
    }
    let name = "proxy", weight: Double
    let learned: LearnedRewards
    init(learned: LearnedRewards, weight: Double) { self.learned = learned; self.weight = weight }
    func scores(_ batch: RewardBatch) throws -> [Double] {
        guard let proxy = batch.proxy else { throw TrainingError("proxy reward: the batch was scored without the learned heads") }
        return proxy
    }
    func snapshots() -> [String: TrainableSnapshot] { learned.snapshots() }
    func restore(directory: String, snapshots: [String: TrainableSnapshot]) throws { try learned.restore(directory: directory, snapshots: snapshots) }
    func writeState(directory: String) throws { try learned.writeState(directory: directory) }

    /// LASeR's bandit learns from the iteration's signal; R2M's fusion from replayed pairs and
    /// this batch (every r2m.every iterations).
    func update(_ u: RewardUpdate) async throws -> [String: Double] {
        guard let scored = u.scored else { return [:] }
        let s = u.session, cfg = s.cfg
        var metrics: [String: Double] = [:]
        let heldOut = learned.bandit != nil && cfg.laser.signal == .heldout
            ? try await learned.heldOutScore(s.heldOutPrompts, policy: s.roles.policy, scorer: s.scorer, maxNewTokens: cfg.ppo.maxNewTokens, eosTokenId: s.tokenizer.eosTokenId) : nil
        learned.finishIteration(policyLoss: u.policyLoss, heldOut: heldOut)
        if let heldOut { metrics["laser_heldout_score"] = heldOut }
        if learned.r2m != nil && u.iteration % cfg.r2m.every == 0 {
            let pairs = s.data.r2mPairs
            var replayRNG = RNG(seed: cfg.run.seed &+ 0x2E9 &+ UInt64(u.iteration))
            let replay = (0..<min(cfg.r2m.replay, pairs.count)).map { _ in pairs[Int(replayRNG.next() % UInt64(pairs.count))] }
            let (pairLoss, anchorLoss) = try await learned.updateR2M(iteration: u.iteration, replay: replay, scored: scored, promptLengths: u.promptLengths,
                                                                     scorer: s.scorer, policy: s.roles.policy, anchor: cfg.r2m.anchor,
                                                                     learningRate: cfg.r2m.lr, replicas: s.replicas)
            metrics["r2m_pair_loss"] = pairLoss; metrics["r2m_anchor_loss"] = anchorLoss; metrics["r2m_weight"] = learned.r2mWeight(iteration: u.iteration)
        }
        return metrics
    }
}
