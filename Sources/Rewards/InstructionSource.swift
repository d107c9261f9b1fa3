import Alignment
import Config
import Datasets
import Foundation

/// Instruction following (the built-in ifeval task): the share of a prompt's verifiable
/// instructions the response keeps (InstructionVerifier reads them from the prompt's answer
/// field). Prompts of other tasks score 0.
package final class InstructionSource: RewardSource {
    package static let weight = Key<Double>(
        "rewards.instructions", 0,
        "weight of the instruction-following verifier: share of an ifeval prompt's constraints the response keeps")
    package static let registration = RewardSourceRegistration(
        name: "instructions", keys: [weight.declaration], isHeadline: { _ in true },
        isActive: { ($0.resolved.optional(InstructionSource.weight) ?? 0) != 0 }
    ) { try make($0) }
    package let name = "instructions", weight: Double

    package init(weight: Double) { self.weight = weight }

    package static func make(_ context: RewardSourceContext) throws -> InstructionSource {
        guard context.pool.contains(where: { context.prompts[$0].task == IFEvalTask.taskName }) else {
            throw ConfigError(
                "rewards.instructions scores ifeval prompts (task \"\(IFEvalTask.taskName)\"), and this run has none "
                    + "(set data.task: ifeval)"
            )
        }
        for i in context.pool where context.prompts[i].task == IFEvalTask.taskName {
            do { _ = try InstructionConstraint.parseList(context.prompts[i].answer ?? "") } catch {
                throw ConfigError("prompt \(i + 1): \(error)")
            }
        }
        return InstructionSource(weight: context.config.resolved[InstructionSource.weight])
    }

    package func scores(_ batch: RewardBatch) throws -> [Double] {
        batch.texts.indices.map { i in
            batch.tasks[i] == IFEvalTask.taskName
                ? InstructionVerifier().score(response: batch.texts[i], answer: batch.answers[i]) : 0
        }
    }
}
