import Alignment
import Config
import Datasets
import Foundation
import Kernels
import Roles

/// The reward head's score of each response, read on the scoring pass (Hydra: the same
/// adapters-off pass as the reference log-probs). Always computed, so always logged.
package final class RewardHeadSource: RewardSource {
    package static let registration = RewardSourceRegistration(name: "reward_head", isActive: { _ in true }) {
        RewardHeadSource(weight: $0.config.rewards.rewardHead)
    }
    package let name = "reward_head", weight: Double
    package init(weight: Double) { self.weight = weight }
    package func scores(_ batch: RewardBatch) throws -> [Double] { batch.headScores }
}

/// 1 when the response's final number is the prompt's answer (ExactAnswerVerifier). Half of the
/// gold reward, so always computed.
package final class VerifierSource: RewardSource {
    package static let registration = RewardSourceRegistration(
        name: "verifier", isGold: { isArithmetic($0) }, isHeadline: { isArithmetic($0) },
        validate: { try checkTask($0) },
        isActive: { _ in true }
    ) { VerifierSource(weight: $0.config.rewards.verifier) }
    package let name = "verifier", weight: Double
    package init(weight: Double) { self.weight = weight }
    package func scores(_ batch: RewardBatch) throws -> [Double] {
        zip(batch.texts, batch.answers).map { ExactAnswerVerifier().score(response: $0, answer: $1) }
    }

    /// The answer and format checks are the gold reward of every task but instruction following,
    /// which has none beyond its instructions reward.
    static func isArithmetic(_ config: RewardConfig) -> Bool { config.task != IFEvalTask.taskName }

    /// The arithmetic checks would score instruction prompts as wrong answers and non-integers.
    static func checkTask(_ config: RewardConfig) throws {
        guard config.task == IFEvalTask.taskName else { return }
        guard
            config.rewards.verifier == 0 && config.rewards.format == 0
                && (config.resolved.optional(InstructionSource.weight) ?? 0) > 0
        else {
            throw ConfigError(
                "data.task ifeval is rewarded by the instructions verifier: set rewards.instructions > 0, "
                    + "rewards.verifier: 0 and rewards.format: 0"
            )
        }
    }
}

/// 0 for a bare integer, −1 otherwise (IntegerFormatVerifier). The other half of the gold reward.
package final class FormatSource: RewardSource {
    package static let registration = RewardSourceRegistration(
        name: "format", isGold: { VerifierSource.isArithmetic($0) }, isActive: { _ in true }
    ) {
        FormatSource(weight: $0.config.rewards.format)
    }
    package let name = "format", weight: Double
    package init(weight: Double) { self.weight = weight }
    package func scores(_ batch: RewardBatch) throws -> [Double] {
        batch.texts.map { IntegerFormatVerifier().score(response: $0, answer: nil) }
    }
}
