import Foundation

/// How per-token advantages are computed from a rollout (docs/algorithms.md §2 and §10).
public enum AdvantageEstimator: String, Sendable, CaseIterable, Codable {
    /// GAE with a critic (PPO).
    case gae
    /// (R − mean_group) / (std_group + 1e-4), unbiased std (DeepSeekMath; TRL).
    case grpo
    /// R − mean_group (Dr. GRPO).
    case drGRPO = "dr_grpo"
    /// R − mean of the other samples of the prompt (Ahmadian et al. 2024).
    case rloo
    /// KL-shaped discounted returns, whitened over the batch (REINFORCE++, Hu 2025).
    case reinforce
    /// R − mean_group first, then as reinforce (REINFORCE++-baseline).
    case reinforceBaseline = "reinforce_baseline"

    public var needsCritic: Bool { self == .gae }
}

public enum GroupAdvantages {
    /// Scalar advantages per sample for the group estimators; `groups` lists, per prompt, the
    /// indices of its samples in `rewards`.
    public static func compute(_ estimator: AdvantageEstimator, rewards: [Double], groups: [[Int]]) -> [Double] {
        var out = rewards
        for group in groups {
            let r = group.map { rewards[$0] }
            let n = Double(r.count)
            let mean = r.reduce(0, +) / n
            switch estimator {
            case .grpo:
                let std = n > 1 ? (r.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)).squareRoot() : 0
                for i in group { out[i] = (rewards[i] - mean) / (std + 1e-4) }
            case .drGRPO, .reinforceBaseline:
                for i in group { out[i] = rewards[i] - mean }
            case .rloo:
                for i in group { out[i] = n > 1 ? (rewards[i] * n - r.reduce(0, +)) / (n - 1) : 0 }
            case .gae, .reinforce:
                break
            }
        }
        return out
    }
}
