import Alignment
import Cluster
import Foundation
import Kernels
import Models
import Roles

/// R2M in PPO (Huang et al., arXiv 2601.22664 v4, Alg. 1; docs/algorithms.md §7): the
/// reward of each sequence is proxy head 1's reward token fused with the policy's last-layer states
/// (R2MFusion, with ω(t)), and after every iteration's policy update the fusion and head take
/// r2m.steps Adam steps on each group's highest- vs lowest-scored sample (GroupRewardEntropy).
extension LearnedRewards {
    /// ω of `iteration` (1-based: round t = iteration − 1 of T = ppo.iterations, so the first
    /// iteration scores with the original reward token alone); 1 with r2m.policy_feedback false.
    package func r2mOmega(iteration: Int) -> Double {
        r2mSettings.policyFeedback
            ? R2MFusion.omega(round: iteration - 1, rounds: iterations, floor: r2mSettings.omegaFloor) : 1
    }

    /// The policy states R2M attends over: h [S−1, C] of a sequence's [S, C] — the paper's
    /// (S−1)×D_p, the positions that predict the sequence's tokens (the last predicts past its end).
    package func attendedStates(_ hidden: [Float], channels c: Int) -> [Float] {
        let s = hidden.count / c
        return s > 1 ? Array(hidden[0..<((s - 1) * c)]) : hidden
    }

    /// The update (Alg. 1 lines 15–20) after the iteration's policy update, on this rank's groups
    /// (`groupSize` consecutive samples of one prompt): the pair is the group's highest and lowest
    /// R2M reward at sampling time (the self-labels; the paper leaves open which scores rank, we
    /// take the annotation phase's R2M rewards, not the run's total), the loss recomputes every reward of the
    /// group with the updated policy's states (the paper refreshes them in the final update epoch;
    /// we run one extra inference pass). Each of r2m.steps Adam steps sums the gradients over every
    /// rank and divides by the number of groups; no clipping (the paper gives no optimiser detail).
    /// With r2m.heldout_pairs, the fused reward's accuracy on them is measured before and after.
    /// Returns the figures to log.
    package func updateR2M(
        iteration: Int, scored: Scored, sequences: [[Int32]], groupSize: Int, policy: LocalPolicy,
        replicas: (any Transport)?
    ) async throws -> [String: Double] {
        let omega = r2mOmega(iteration: iteration)
        var figures = ["r2m_omega": omega]
        var heldOutStates: [[Float]]?
        if let pairs = r2mHeldOut { heldOutStates = try await policy.logProbsAndHidden(pairs.sequences).hidden }
        func measure(_ key: String) {
            if let r2m, let pairs = r2mHeldOut, let states = heldOutStates {
                figures[key] = pairs.accuracy(
                    r2m, policyStates: states.map { attendedStates($0, channels: r2m.policyChannels) }, omega: omega)
            }
        }
        measure("r2m_heldout_acc_before")
        guard r2m != nil, r2mSettings.update else { return figures }
        let (_, fresh) = try await policy.logProbsAndHidden(sequences)
        for step in 0..<r2mSettings.steps {
            let sums = try await r2mStep(
                scored: scored, fresh: fresh, groupSize: groupSize, omega: omega, replicas: replicas)
            figures["r2m_groups"] = sums.groups
            guard sums.groups > 0 else { return figures }
            // The losses before the round's first step (comparable at any r2m.steps), and before its last.
            let suffix = step == 0 ? "" : "_last_step"
            figures["r2m_bt_loss" + suffix] = sums.bradleyTerry / sums.groups
            figures["r2m_group_entropy" + suffix] = sums.entropy / sums.groups
        }
        measure("r2m_heldout_acc_after")
        return figures
    }

    /// One Adam step of the fusion and head on every group's pair, with the states `fresh` [B][S·C]
    /// (+ r2m.anchor·(θ − θ₀), ours). Returns the loss sums over every rank's groups (before the step).
    func r2mStep(scored: Scored, fresh: [[Float]], groupSize: Int, omega: Double, replicas: (any Transport)?)
        async throws -> R2MUpdateSums
    {
        guard let r2m, let optimizer = r2mOptimizer, let grads = r2mGradients else { return R2MUpdateSums() }
        let c = r2m.policyChannels
        grads.zero()
        var sums = R2MUpdateSums()
        for start in stride(from: 0, to: fresh.count - groupSize + 1, by: max(groupSize, 1)) where groupSize >= 2 {
            let rows = Array(start..<(start + groupSize))
            guard let (winner, loser) = GroupRewardEntropy.pair(scores: rows.map { scored.proxy[$0] }) else { continue }
            let caches = rows.map {
                r2m.forward(
                    rewardHidden: scored.lastHidden[$0], policyHidden: attendedStates(fresh[$0], channels: c),
                    omega: omega)
            }
            let loss = GroupRewardEntropy.loss(
                rewards: caches.map { Double($0.reward) }, winner: winner, loser: loser,
                alpha: r2mSettings.entropyWeight)
            for (j, cache) in caches.enumerated() where loss.gradient[j] != 0 {
                r2m.backward(cache, dReward: Float(loss.gradient[j]), gradients: grads)
            }
            sums.bradleyTerry += loss.bradleyTerry
            sums.entropy += loss.entropy
            sums.groups += 1
        }
        if let replicas {
            try await replicas.allReduce(grads, op: .sum)
            sums = try await sums.summed(over: replicas)
        }
        guard sums.groups > 0 else { return sums }
        let anchor = Float(r2mSettings.anchor)
        for i in 0..<grads.count {
            grads[i] /= Float(sums.groups)
            if anchor > 0, let start = r2mStart { grads[i] += anchor * (r2m.parameters[i] - start[i]) }
        }
        optimizer.update(parameters: r2m.parameters, gradients: grads, learningRate: r2mSettings.lr)
        return sums
    }
}

/// What R2M's update adds up over the ranks' groups.
struct R2MUpdateSums: RankSums {
    var bradleyTerry = 0.0, entropy = 0.0, groups = 0.0
    mutating func visitSums(_ visit: (inout Double) -> Void) {
        visit(&bradleyTerry)
        visit(&entropy)
        visit(&groups)
    }
}
