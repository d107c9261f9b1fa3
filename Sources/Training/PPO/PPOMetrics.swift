import Alignment
import Cluster
import Foundation
import Rewards
import Roles
import Runs

/// What one iteration sums over its samples on every rank: counts and sums that add across ranks,
/// so that the means and standard deviations are those of the whole global batch.
struct PPOBatchSums: RankSums, Equatable {
    var samples = 0.0, kl = 0.0, responseTokens = 0.0, truncated = 0.0
    var reward = SumOfSquares(), gold = SumOfSquares()
    /// Per reward source, in the registry's order: its values' Σx and Σx².
    var sources: [SumOfSquares] = []
    /// Per reward source, in the registry's order: the sums of its own figures.
    var sourceSums: [NamedSums] = []

    mutating func visitSums(_ visit: (inout Double) -> Void) {
        visit(&samples)
        visit(&kl)
        visit(&responseTokens)
        visit(&truncated)
        reward.visitSums(visit)
        gold.visitSums(visit)
        for k in sources.indices { sources[k].visitSums(visit) }
        for k in sourceSums.indices { sourceSums[k].visitSums(visit) }
    }
}

/// One PPO iteration's record in metrics.jsonl: the global batch's statistics, the optimizer
/// steps' figures (losses of the global steps; clip fraction, entropy and grad norm averaged over
/// the ranks' micro-batches), timings and the reward sources' own figures.
struct PPOMetrics {
    var iteration: Int
    var sums: PPOBatchSums
    var sourceNames: [String]
    /// The source the progress line shows after the reward (the verifier, or instructions).
    var headline: String?
    var klCoefficient: Double, promptPool: Int
    var policyLoss: Double, clipFraction: Double, entropy: Double, gradNorm: Double, valueLoss: Double?
    var learningRate: Double
    var generateSeconds: Double, scoreSeconds: Double, trainSeconds: Double, communicateSeconds: Double
    /// The reward sources' figures (route shares, r2m_pair_loss, laser_arm, …).
    var sourceFigures: [String: Double] = [:]

    var meanKL: Double { sums.kl / sums.samples }
    var meanResponseLength: Double { sums.responseTokens / sums.samples }

    /// The mean of source `name`'s reward over the global batch.
    func sourceMean(_ name: String) -> Double? {
        sourceNames.firstIndex(of: name).map { sums.sources[$0].meanStd(sums.samples).mean }
    }

    /// A figure of the record by its metrics.jsonl name.
    func value(_ name: String) -> Double? { (try? MetricsObject.fields(of: self))?[name] as? Double }
}

extension PPOMetrics: StepReport {
    func encode(to encoder: any Encoder) throws {
        let n = sums.samples
        var m = encoder.container(keyedBy: MetricsKey.self)
        try m.encode(iteration, forKey: MetricsKey("step"))
        try m.encode(promptPool, forKey: MetricsKey("prompt_pool"))
        try m.encode(figures: [
            "kl": meanKL, "kl_coef": klCoefficient, "response_length": meanResponseLength,
            "truncated_rate": sums.truncated / n,
            "reward_mean": sums.reward.meanStd(n).mean, "reward_std": sums.reward.meanStd(n).std,
            "gold_mean": sums.gold.meanStd(n).mean,
            "gold_std": sums.gold.meanStd(n).std, "policy_loss": policyLoss, "clip_fraction": clipFraction,
            "entropy": entropy,
            "grad_norm": gradNorm, "lr": learningRate, "generate_s": generateSeconds, "score_s": scoreSeconds,
            "train_s": trainSeconds,
            "communicate_s": communicateSeconds,
        ])
        if let valueLoss { try m.encode(valueLoss, forKey: MetricsKey("value_loss")) }
        for (k, name) in sourceNames.enumerated() {
            let (mean, std) = sums.sources[k].meanStd(n)
            try m.encode(figures: ["reward_\(name)_mean": mean, "reward_\(name)_std": std])
        }
        try m.encode(figures: sourceFigures)
    }

    var progressFields: String {
        let headlineField = headline.map { String(format: " %@ %.3f", $0, sourceMean($0) ?? 0) } ?? ""
        return String(
            format: "reward %.3f%@ kl %.4f clip %.3f len %.1f", sums.reward.meanStd(sums.samples).mean, headlineField,
            meanKL,
            clipFraction, meanResponseLength)
    }

    var watched: WatchedValues {
        .finite([
            ("gradient norm", gradNorm), ("policy loss", policyLoss), ("KL", meanKL), ("value loss", valueLoss ?? 0),
        ])
    }
}
