import Foundation

/// LASeR's bandit reward (Nguyen et al., arXiv 2410.01735 §3; release code: the negative training
/// loss of the update made with the selected reward model's pairs; docs/algorithms.md §9):
/// the chosen arm ranks each prompt's samples, its best and worst make a pair, and the bandit is
/// paid −(DPO + NLL) of the policy on those pairs:
///   L = mean over pairs of  −log σ(β·[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))])
///                         + λ_NLL · (−log π(y_w) / |y_w|)
/// with π_ref the policy at the start of the iteration (the paper resets the reference every
/// iteration) and π the policy after the iteration's update: before it π = π_ref and the DPO term
/// is log 2 for every arm. The paper pairs the top sample with ranks 2–11 of 30; with a handful of
/// samples per prompt we take best vs worst. β = 0.1 and λ_NLL = 1 as the release code.
/// In PPO one update moves the policy little, so the DPO term stays near log 2 − β·h/2 for every
/// arm and the signal is mostly the NLL of the arm's winners: the bandit favours the arm whose
/// best samples the updated policy finds most likely.
public enum LaserPairSignal {
    /// Log-probability sums (over the response tokens) of one best/worst pair.
    public struct Pair: Equatable {
        public var chosen: Double, rejected: Double, refChosen: Double, refRejected: Double
        public var chosenTokens: Int
        public init(chosen: Double, rejected: Double, refChosen: Double, refRejected: Double, chosenTokens: Int) {
            self.chosen = chosen
            self.rejected = rejected
            self.refChosen = refChosen
            self.refRejected = refRejected
            self.chosenTokens = chosenTokens
        }
    }

    /// The summed DPO + NLL loss of `pairs` (divide by the pair count, over every rank, for the mean).
    public static func lossSum(_ pairs: [Pair], beta: Double, nllWeight: Double) -> Double {
        pairs.reduce(0) { sum, p in
            let h = PreferenceLosses.margin(
                chosen: p.chosen, rejected: p.rejected, refChosen: p.refChosen, refRejected: p.refRejected)
            let dpo = PreferenceLosses.dpoFamily(.dpo, h: h, beta: beta).loss
            return sum + dpo + nllWeight * (-p.chosen / Double(max(p.chosenTokens, 1)))
        }
    }

    /// Each group's (best, worst) sample by the arm's scores, as row indices into `scores`
    /// ([groups × groupSize], a group's samples consecutive); groups whose scores are all equal
    /// make no pair.
    public static func pairs(scores: [Double], groupSize: Int) -> [(winner: Int, loser: Int)] {
        guard groupSize >= 2 else { return [] }
        return stride(from: 0, to: scores.count - groupSize + 1, by: groupSize).compactMap { start in
            GroupRewardEntropy.pair(scores: Array(scores[start..<(start + groupSize)])).map {
                (start + $0.winner, start + $0.loser)
            }
        }
    }
}
