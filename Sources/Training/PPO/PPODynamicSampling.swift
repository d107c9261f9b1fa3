import Cluster
import Foundation

/// DAPO's dynamic sampling (Yu et al. 2025, arXiv 2503.14476 §3.2; docs/algorithms.md §10.1): a
/// group whose samples all got the same reward has advantage 0 under the group estimators and
/// teaches nothing, so it is dropped and its place filled by a group of a new prompt.
extension PPOSession {
    /// This rank's rollout of `iteration` with every group's rewards spread, drawn in at most
    /// `ppo.dynamic_sampling_rounds` rollouts; places still empty after them keep dropped groups.
    /// Every rank rolls out and scores in each round (the rounds are agreed over the ranks, so
    /// that collectives inside scoring line up), and the chosen groups are scored once more together.
    func dynamicRollout(_ iteration: Int) async throws -> (Rollout, ScoredRollout) {
        let size = cfg.ppo.samples
        let (first, firstScored) = try await scoredRollout(iteration, round: 1)
        let groups = first.prompts.count / size
        var kept: [(rollout: Rollout, group: Int)] = [], dropped: [(rollout: Rollout, group: Int)] = []
        func sort(_ r: Rollout, _ s: ScoredRollout) {
            for g in 0..<(s.scores.count / size) {
                let rewards = s.scores[(g * size)..<((g + 1) * size)]
                if kept.count < groups && rewards.contains(where: { $0 != rewards.first }) {
                    kept.append((r, g))
                } else {
                    dropped.append((r, g))
                }
            }
        }
        sort(first, firstScored)
        let droppedFirst = Double(groups - kept.count)
        var rounds = 1, seconds = first.seconds
        while rounds < cfg.recipe.dynamicSamplingRounds, try await anyRankShort(groups - kept.count) {
            rounds += 1
            let (more, moreScored) = try await scoredRollout(iteration, round: rounds)
            seconds += more.seconds
            sort(more, moreScored)
        }
        let short = groups - kept.count
        kept += dropped.prefix(short)  // the first dropped, in round order
        var figures = ["dynamic_sampling_dropped": droppedFirst, "dynamic_sampling_rounds": Double(rounds)]
        figures["dynamic_sampling_short"] = Double(short)
        figures = try await NamedSums(figures).summed(over: replicas).values
        figures["dynamic_sampling_rounds"] = Double(rounds)
        guard rounds > 1 else {
            var scored = firstScored
            scored.samplingFigures = figures
            return (first, scored)
        }
        let chosen = Rollout(joining: kept, groupSize: size, seconds: seconds)
        var scored = try await score(chosen)
        scored.samplingFigures = figures
        return (chosen, scored)
    }

    /// Whether any rank still lacks groups (a collective: every rank asks each round).
    func anyRankShort(_ missing: Int) async throws -> Bool {
        guard let replicas, replicas.size > 1 else { return missing > 0 }
        return try await replicas.allReduce([Double(missing)], op: .sum)[0] > 0
    }
}

extension Rollout {
    /// The groups `parts` (each `groupSize` consecutive samples of a rollout), in that order.
    init(joining parts: [(rollout: Rollout, group: Int)], groupSize: Int, seconds: Double) {
        func take<T>(_ column: (Rollout) -> [T]) -> [T] {
            parts.flatMap { Array(column($0.rollout)[($0.group * groupSize)..<(($0.group + 1) * groupSize)]) }
        }
        self.init(
            iteration: parts[0].rollout.iteration, prompts: take(\.prompts), promptIndices: take(\.promptIndices),
            tokens: take(\.tokens), endedWithEOS: take(\.endedWithEOS), sequences: take(\.sequences),
            promptLengths: take(\.promptLengths), texts: take(\.texts), sampledLogProbs: take(\.sampledLogProbs),
            promptPool: parts[0].rollout.promptPool, seconds: seconds)
    }
}
