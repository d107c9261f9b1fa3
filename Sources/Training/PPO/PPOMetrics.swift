import Cluster
import Foundation
import Rewards
import Roles

/// What one iteration sums over its samples on every rank: counts and sums that add across ranks,
/// so that the means and standard deviations are those of the whole global batch.
struct PPOBatchSums: Equatable {
    var samples = 0.0, kl = 0.0, responseTokens = 0.0, truncated = 0.0
    var reward = Moment(), gold = Moment()
    /// Per reward source, in the registry's order: its values' sum and sum of squares.
    var sources: [Moment] = []
    /// Learned proxies: the mean of every head (whatever the selection picked).
    var proxyEnsemble = 0.0
    /// Hybrid reward: samples per route, then their gold reward's sum per route, each in
    /// `HybridReward.Route.allCases` order.
    var routes: [Double] = []

    /// Σx and Σx² of one quantity.
    struct Moment: Equatable {
        var sum = 0.0, squares = 0.0
        init() {}
        init(_ values: [Double]) { sum = values.reduce(0, +); squares = values.map { $0 * $0 }.reduce(0, +) }
        func meanStd(_ n: Double) -> (mean: Double, std: Double) { let m = sum / n; return (m, max(squares / n - m * m, 0).squareRoot()) }
    }

    /// The sums as one vector (the all-reduce's payload) and back; the layout is the field order.
    var vector: [Double] {
        [samples, kl, responseTokens, truncated, reward.sum, reward.squares, gold.sum, gold.squares, proxyEnsemble]
            + sources.flatMap { [$0.sum, $0.squares] } + routes
    }
    func with(vector v: [Double]) -> PPOBatchSums {
        var out = self
        (out.samples, out.kl, out.responseTokens, out.truncated) = (v[0], v[1], v[2], v[3])
        (out.reward.sum, out.reward.squares, out.gold.sum, out.gold.squares, out.proxyEnsemble) = (v[4], v[5], v[6], v[7], v[8])
        let s = 9
        out.sources = sources.indices.map { k in var m = Moment(); (m.sum, m.squares) = (v[s + 2 * k], v[s + 2 * k + 1]); return m }
        out.routes = Array(v[(s + 2 * sources.count)...])
        return out
    }

    /// Summed over `replicas` (every rank rolling out), or as it is.
    func allReduced(_ replicas: (any Transport)?) async throws -> PPOBatchSums {
        guard let replicas else { return self }
        return with(vector: try await replicas.allReduce(vector, op: .sum))
    }
}

/// One PPO iteration's record in metrics.jsonl: the global batch's statistics, the optimizer
/// steps' means on this rank, timings and the learned rewards' own figures.
struct PPOMetrics {
    var iteration: Int
    var sums: PPOBatchSums
    var sourceNames: [String]
    var klCoefficient: Double, promptPool: Int
    var policyLoss: Double, clipFraction: Double, entropy: Double, gradNorm: Double, valueLoss: Double?
    var learningRate: Double
    var generateSeconds: Double, scoreSeconds: Double, trainSeconds: Double, communicateSeconds: Double
    var hasProxy: Bool, laserArm: Int?, hasRoutes: Bool
    /// R2M and LASeR figures (r2m_pair_loss, laser_heldout_score, …).
    var learned: [String: Double] = [:]

    var meanKL: Double { sums.kl / sums.samples }
    var meanResponseLength: Double { sums.responseTokens / sums.samples }

    func value(_ name: String) -> Double? { json[name] as? Double }

    var json: [String: Any] {
        let n = sums.samples
        var m: [String: Any] = [
            "step": iteration, "kl": meanKL, "kl_coef": klCoefficient, "prompt_pool": promptPool, "response_length": meanResponseLength,
            "truncated_rate": sums.truncated / n, "reward_mean": sums.reward.meanStd(n).mean, "reward_std": sums.reward.meanStd(n).std,
            "policy_loss": policyLoss, "clip_fraction": clipFraction, "entropy": entropy, "grad_norm": gradNorm,
            "lr": learningRate, "generate_s": generateSeconds, "score_s": scoreSeconds, "train_s": trainSeconds, "communicate_s": communicateSeconds,
        ]
        if let valueLoss { m["value_loss"] = valueLoss }
        (m["gold_mean"], m["gold_std"]) = sums.gold.meanStd(n)
        if hasProxy { m["proxy_ensemble_mean"] = sums.proxyEnsemble / n }
        if let laserArm { m["laser_arm"] = laserArm }
        if hasRoutes {
            // The gold reward per route, and over the routes the GenRM judges (on the verifier's
            // route the hybrid reward is the gold reward's own rules).
            let routes = HybridReward.Route.allCases, count = routes.count
            for (k, r) in routes.enumerated() {
                m["route_\(r.rawValue)_share"] = sums.routes[k] / n
                if sums.routes[k] > 0 { m["gold_\(r.rawValue)_mean"] = sums.routes[count + k] / sums.routes[k] }
            }
            let judged = routes.indices.filter { routes[$0] != .verifier }
            let judgedCount = judged.reduce(0) { $0 + sums.routes[$1] }
            if judgedCount > 0 { m["gold_judged_mean"] = judged.reduce(0) { $0 + sums.routes[count + $1] } / judgedCount }
        }
        for (k, name) in sourceNames.enumerated() {
            (m["reward_\(name)_mean"], m["reward_\(name)_std"]) = sums.sources[k].meanStd(n)
        }
        for (key, v) in learned { m[key] = v }
        return m
    }
}
