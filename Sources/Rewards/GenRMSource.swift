import Config
import Foundation
import Roles

/// The generative reward model on its own (Shen et al. 2025, docs/algorithms.md §8.2): the judge's
/// P(Y) / (P(Y) + P(N)) reading the question, the response and the prompt's reference answer.
/// (The hybrid source routes to the same judge only the prompts without a rule verifier.)
package final class GenRMSource: RewardSource {
    package static let weight = Key<Double>(
        "rewards.genrm", 0,
        "weight of the generative reward model (rewards.genrm_model) judging every response against its prompt's answer"
    )
    package static let registration = RewardSourceRegistration(
        name: "genrm", keys: [weight.declaration],
        isActive: { ($0.resolved.optional(GenRMSource.weight) ?? 0) != 0 }
    ) { try await make($0) }
    package let name = "genrm", weight: Double
    package let judge: GenerativeReward

    package init(judge: GenerativeReward, weight: Double) {
        self.judge = judge
        self.weight = weight
    }

    package static func make(_ context: RewardSourceContext) async throws -> GenRMSource {
        let cfg = context.config
        guard !cfg.rewards.genrmModel.isEmpty else {
            throw ConfigError("rewards.genrm needs 'rewards.genrm_model' (an SFT checkpoint trained on judge.jsonl)")
        }
        if let k = context.pool.first(where: { context.prompts[$0].answer == nil }) {
            throw ConfigError(
                "rewards.genrm judges against the prompt's answer, and prompt \(k) has none (rewards.hybrid judges "
                    + "those against best-of-N references)"
            )
        }
        let judge = try await GenerativeReward.load(
            directory: cfg.rewards.genrmModel, precision: cfg.precision, host: context.host)
        if let line = HostWeights.summary(judge.trunk, host: context.host) { context.say("judge model: \(line)") }
        return GenRMSource(judge: judge, weight: cfg.resolved[GenRMSource.weight])
    }

    package func scores(_ batch: RewardBatch) throws -> [Double] {
        try judge.scores(
            batch.texts.indices.map { i in
                (question: batch.questions[i], candidate: batch.texts[i], reference: batch.answers[i] ?? "")
            })
    }
}
