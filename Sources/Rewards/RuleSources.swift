import Alignment
import Config
import Foundation
import Kernels
import Roles
import Runs

/// The reward head's score of each response, read on the scoring pass (Hydra: the same
/// adapters-off pass as the reference log-probs). Always computed, so always logged.
package final class RewardHeadSource: RewardSource {
    package static let registration = RewardSourceRegistration(name: "reward_head", isActive: { _ in true }) { RewardHeadSource(weight: $0.config.rewards.rewardHead) }
    package let name = "reward_head", weight: Double
    package init(weight: Double) { self.weight = weight }
    package func scores(_ batch: RewardBatch) throws -> [Double] { batch.headScores }
}

/// 1 when the response's final number is the prompt's answer (ExactAnswerVerifier). Half of the
/// gold reward, so always computed.
package final class VerifierSource: RewardSource {
    package static let registration = RewardSourceRegistration(name: "verifier", isActive: { _ in true }) { VerifierSource(weight: $0.config.rewards.verifier) }
    package let name = "verifier", weight: Double
    package init(weight: Double) { self.weight = weight }
    package func scores(_ batch: RewardBatch) throws -> [Double] { zip(batch.texts, batch.answers).map { ExactAnswerVerifier().score(response: $0, answer: $1) } }
}

/// 0 for a bare integer, −1 otherwise (IntegerFormatVerifier). The other half of the gold reward.
package final class FormatSource: RewardSource {
    package static let registration = RewardSourceRegistration(name: "format", isActive: { _ in true }) { FormatSource(weight: $0.config.rewards.format) }
    package let name = "format", weight: Double
    package init(weight: Double) { self.weight = weight }
    package func scores(_ batch: RewardBatch) throws -> [Double] { batch.texts.map { IntegerFormatVerifier().score(response: $0, answer: nil) } }
}
