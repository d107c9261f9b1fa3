import Alignment
import Config
import Foundation

/// The hybrid reward (Shen et al. 2025, algorithms.md §8.2): each prompt routed by its task to
/// rule verifiers, the GenRM with the answer, or the GenRM against a best-of-N reference; the
/// best-of-N references are sampled once when the source is built.
package final class HybridSource: RewardSource {
    package static let registration = RewardSourceRegistration(name: "hybrid", isActive: { $0.rewards.hybrid != 0 }) { try await HybridSource.make($0) }
    package let name = "hybrid", weight: Double
    package let hybrid: HybridReward
    /// The routes of the last batch scored (for the route shares in the metrics).
    package private(set) var lastRoutes: [HybridReward.Route] = []

    package init(hybrid: HybridReward, weight: Double) { self.hybrid = hybrid; self.weight = weight }

    package static func make(_ context: RewardSourceContext) async throws -> HybridSource {
        let cfg = context.config, prompts = context.prompts
        let verifiers: [String: [any Verifier]]
        do { verifiers = try Verifiers.routes(cfg.rewards.verifierTasks) } catch { throw ConfigError("'rewards.verifier_tasks': \(error)") }
        let hybrid = HybridReward(verifiers: verifiers, referenceTasks: cfg.rewards.referenceTasks,
                                  genrm: cfg.rewards.genrmModel.isEmpty ? nil : try GenerativeReward(directory: cfg.rewards.genrmModel))
        let needBoN = context.pool.filter { hybrid.route(task: prompts[$0].task, hasAnswer: prompts[$0].answer != nil) == .genrmBestOfN }
        hybrid.bestOfN = try await HybridReward.bestOfNReferences(needBoN, prompts: prompts, config: cfg, policy: context.policy,
                                                                  scorer: context.scorer, tokenizer: context.tokenizer, learned: context.learned)
        let routes = Dictionary(grouping: context.pool) { hybrid.route(task: prompts[$0].task, hasAnswer: prompts[$0].answer != nil).rawValue }.mapValues(\.count)
        context.say("hybrid reward: prompts per route \(routes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
        return HybridSource(hybrid: hybrid, weight: cfg.rewards.hybrid)
    }

    package func scores(_ batch: RewardBatch) throws -> [Double] {
        let (values, routes) = try hybrid.scores(prompts: batch.promptIndices, questions: batch.questions, tasks: batch.tasks,
                                                 answers: batch.answers, texts: batch.texts)
        lastRoutes = routes
        return values
    }
}
