import Foundation

/// Pre-PPO prompt selection (Shen et al. 2025, docs/algorithms.md §8.3, our proposed rule): score each
/// prompt by the mean reward of n SFT samples, z-score within its task (reward scales differ
/// between tasks), and keep the lowest `share` of all prompts — the hard ones, less prone to
/// reward hacking.
public enum PrePPOSelection {
    /// Per-task z-scores with the population standard deviation (0 where a task's scores are all equal).
    public static func zScores(scores: [Double], tasks: [String]) -> [Double] {
        precondition(scores.count == tasks.count)
        var byTask: [String: [Int]] = [:]
        for (i, t) in tasks.enumerated() { byTask[t, default: []].append(i) }
        var z = [Double](repeating: 0, count: scores.count)
        for indices in byTask.values {
            let n = Double(indices.count)
            let mean = indices.reduce(0) { $0 + scores[$1] } / n
            let std = (indices.reduce(0) { $0 + (scores[$1] - mean) * (scores[$1] - mean) } / n).squareRoot()
            for i in indices { z[i] = std > 0 ? (scores[i] - mean) / std : 0 }
        }
        return z
    }

    /// How many of `n` prompts a share keeps: round(share × n), at least one.
    public static func keptCount(_ n: Int, share: Double) -> Int {
        max(1, min(n, Int((share * Double(n)).rounded())))
    }

    /// Indices of the kept prompts, ascending: the round(share × n) lowest z-scores (at least one),
    /// ties broken by index.
    public static func hardest(scores: [Double], tasks: [String], share: Double) -> [Int] {
        let z = zScores(scores: scores, tasks: tasks)
        let keep = keptCount(scores.count, share: share)
        return z.indices.sorted { (z[$0], $0) < (z[$1], $1) }.prefix(keep).sorted()
    }
}
