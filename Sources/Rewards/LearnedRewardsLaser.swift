import Alignment
import Cluster
import Foundation
import Kernels
import Models
import Roles

/// LASeR in PPO (Nguyen et al., arXiv 2410.01735; docs/algorithms.md §9): LinUCB picks
/// one arm per batch from a context of the policy's prompt states; after the update the arm is paid
/// −(DPO + NLL) on best-vs-worst pairs it ranked (LaserPairSignal), normalised by the 20th/80th
/// percentiles of the history from the first reward on.
extension LearnedRewards {
    /// The context (the paper, per its reviews: the current policy's last-layer state at each
    /// prompt's last token, averaged over the batch — every rank's), L2-normalised. On the arith
    /// task every prompt ends in '=' and the states differ little, so the context is nearly
    /// constant and LinUCB acts as a plain UCB bandit. The L2 normalisation is ours (the paper and
    /// code use the raw mean), so that the ridge prior A = I weighs the same for any model width.
    package func context(policyHidden: [[Float]], promptLengths: [Int], channels c: Int, replicas: (any Transport)?)
        async throws -> [Double]
    {
        var sum = ContextSums(states: [Double](repeating: 0, count: c))
        for (h, n) in zip(policyHidden, promptLengths) {
            let last = (n - 1) * c
            for j in 0..<c { sum.states[j] += Double(h[last + j]) }
            sum.prompts += 1
        }
        sum = try await sum.summed(over: replicas)
        var x = sum.states.map { $0 / max(sum.prompts, 1) }
        let norm = x.reduce(0) { $0 + $1 * $1 }.squareRoot()
        if norm > 0 { x = x.map { $0 / norm } }
        return x
    }

    /// The mean −(DPO + NLL) bandit reward over every rank's pairs: each group's best and worst
    /// sample by the chosen arm's scores, π the policy after the update, π_ref its log-probs at
    /// sampling time (`old`, [B][S−1]). nil when no group has two different scores.
    package func laserPairReward(
        scored: Scored, old: [[Float]], sequences: [[Int32]], promptLengths: [Int], groupSize: Int, policy: LocalPolicy,
        replicas: (any Transport)?
    ) async throws -> (reward: Double, pairs: Int)? {
        let pairs = scored.armScores.map { LaserPairSignal.pairs(scores: $0, groupSize: groupSize) } ?? []
        let rows = pairs.flatMap { [$0.winner, $0.loser] }
        let current = rows.isEmpty ? [] : try await policy.logProbs(rows.map { sequences[$0] })
        // Response sums: log-probs of tokens[1...], so the response starts at promptLength − 1.
        func responseSum(_ logProbs: [Float], _ row: Int) -> Double {
            logProbs[(promptLengths[row] - 1)...].reduce(0) { $0 + Double($1) }
        }
        let signal = pairs.enumerated().map { k, p in
            LaserPairSignal.Pair(
                chosen: responseSum(current[2 * k], p.winner), rejected: responseSum(current[2 * k + 1], p.loser),
                refChosen: responseSum(old[p.winner], p.winner), refRejected: responseSum(old[p.loser], p.loser),
                chosenTokens: sequences[p.winner].count - promptLengths[p.winner])
        }
        let sums = try await LaserPairSums(
            loss: LaserPairSignal.lossSum(signal, beta: laser.beta, nllWeight: laser.nll),
            pairs: Double(signal.count)
        ).summed(over: replicas)
        return sums.pairs > 0 ? (-sums.loss / sums.pairs, Int(sums.pairs)) : nil
    }

    /// Pays the arm chosen for this batch (nil signal: no update) and returns the normalised reward.
    @discardableResult
    package func finishIteration(signal: Double?, heldOut: Double?) -> Double? {
        defer { if let heldOut { previousEnsembleMean = heldOut } }
        guard var b = bandit, let (arm, x) = pending else { return nil }
        pending = nil
        guard let signal else { return nil }
        let normalised = b.update(arm: arm, context: x, reward: signal)
        bandit = b
        return normalised
    }

    /// The heads' mean score of the policy's greedy responses to `prompts` (laser.reward heldout).
    package func heldOutScore(
        _ prompts: [[Int32]], policy: LocalPolicy, scorer: HydraScorer, maxNewTokens: Int, eosTokenId: Int32?
    ) async throws -> Double {
        guard !prompts.isEmpty else { return 0 }
        let out = try await policy.generate(
            prompts: prompts, options: .greedy(maxNewTokens: maxNewTokens, eosTokenId: eosTokenId)
        ).tokens
        let sequences = zip(prompts, out).map { $0 + $1 }
        let (_, last) = try await scorer.referenceAndLastHidden(sequences)
        let scores = headScores(try proxyStates(sequences, shared: last))
        return scores.reduce(0) { $0 + $1.reduce(0, +) } / Double(scores.count * sequences.count)
    }
}

/// What LASeR's pair signal adds up over the ranks: Σ −reward (DPO + NLL) and the pairs.
struct LaserPairSums: RankSums {
    var loss: Double, pairs: Double
    mutating func visitSums(_ visit: (inout Double) -> Void) {
        visit(&loss)
        visit(&pairs)
    }
}

/// LASeR's context over the ranks: Σ of each prompt's last state [C] and the prompts.
struct ContextSums: RankSums {
    var states: [Double], prompts = 0.0
    mutating func visitSums(_ visit: (inout Double) -> Void) {
        for j in states.indices { visit(&states[j]) }
        visit(&prompts)
    }
}
