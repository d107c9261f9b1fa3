import Alignment
import Cluster
import Config
import Foundation
import Roles

/// The hybrid reward (Shen et al. 2025, docs/algorithms.md §8.2): each prompt routed by its task to
/// rule verifiers, the GenRM with the answer, or the GenRM against a best-of-N reference; the
/// best-of-N references are sampled once when the source is built.
package final class HybridSource: RewardSource {
    package static let registration = RewardSourceRegistration(
        name: "hybrid", needs: { $0.rewards.proxyTasks.isEmpty ? [] : [.lastHidden] },
        isActive: { $0.rewards.hybrid != 0 }
    ) { try await HybridSource.make($0) }
    package let name = "hybrid", weight: Double
    package let hybrid: HybridReward
    /// Proxy head 1 for the tasks of rewards.proxy_tasks.
    let learned: LearnedRewards?
    /// The routes of the last batch scored (for the route shares in the metrics).
    package private(set) var lastRoutes: [HybridReward.Route] = []

    package init(hybrid: HybridReward, weight: Double, learned: LearnedRewards? = nil) {
        self.hybrid = hybrid
        self.weight = weight
        self.learned = learned
    }

    package static func make(_ context: RewardSourceContext) async throws -> HybridSource {
        let cfg = context.config, prompts = context.prompts
        let verifiers: [String: [any Verifier]]
        do { verifiers = try Verifiers.routes(cfg.rewards.verifierTasks) } catch {
            throw ConfigError("'rewards.verifier_tasks': \(error)")
        }
        let judge =
            cfg.rewards.genrmModel.isEmpty
            ? nil
            : try await GenerativeReward.load(
                directory: cfg.rewards.genrmModel, precision: cfg.precision, host: context.host)
        if let judge, let line = HostWeights.summary(judge.trunk, host: context.host) {
            context.say("judge model: \(line)")
        }
        guard cfg.rewards.proxyTasks.isEmpty || context.learned?.heads.isEmpty == false else {
            throw ConfigError("'rewards.proxy_tasks' routes prompts to proxy head 1: set 'rewards.proxy_heads'")
        }
        let hybrid = HybridReward(
            verifiers: verifiers, referenceTasks: cfg.rewards.referenceTasks, proxyTasks: cfg.rewards.proxyTasks,
            genrm: judge)
        let needBoN = context.pool.filter {
            hybrid.route(task: prompts[$0].task, hasAnswer: prompts[$0].answer != nil) == .genrmBestOfN
        }
        hybrid.bestOfN = try await HybridReward.bestOfNReferences(
            needBoN, prompts: prompts, config: cfg, policy: context.policy,
            scorer: context.scorer, tokenizer: context.tokenizer, learned: context.learned)
        let routes = Dictionary(grouping: context.pool) {
            hybrid.route(task: prompts[$0].task, hasAnswer: prompts[$0].answer != nil).rawValue
        }.mapValues(\.count)
        context.say(
            "hybrid reward: prompts per route "
                + "\(routes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))"
        )
        return HybridSource(hybrid: hybrid, weight: cfg.rewards.hybrid, learned: context.learned)
    }

    package func scores(_ batch: RewardBatch) throws -> [Double] {
        var proxy: [Double]?
        if let learned, batch.tasks.contains(where: hybrid.proxyTasks.contains) {
            proxy = learned.headScores(try learned.proxyStates(batch.sequences, shared: batch.lastHidden))[0]
        }
        let (values, routes) = try hybrid.scores(
            prompts: batch.promptIndices, questions: batch.questions, tasks: batch.tasks,
            answers: batch.answers, texts: batch.texts, proxy: proxy)
        lastRoutes = routes
        return values
    }

    /// Per route: the samples routed there and their gold reward's sum.
    package func sums(_ batch: RewardBatch, gold: [Double]) -> NamedSums {
        var sums = NamedSums()
        for route in HybridReward.Route.allCases {
            let rows = lastRoutes.indices.filter { lastRoutes[$0] == route }
            sums["route_\(route.rawValue)_count"] = Double(rows.count)
            sums["route_\(route.rawValue)_gold"] = rows.reduce(0) { $0 + gold[$1] }
        }
        return sums
    }

    /// Each route's share and mean gold reward, and the gold reward over the routes the GenRM
    /// judges (on the verifier's route the hybrid reward is the gold reward's own rules).
    package func figures(_ sums: NamedSums, samples: Double) -> [String: Double] {
        var figures: [String: Double] = [:]
        for route in HybridReward.Route.allCases {
            let count = sums["route_\(route.rawValue)_count"]
            figures["route_\(route.rawValue)_share"] = count / samples
            if count > 0 { figures["gold_\(route.rawValue)_mean"] = sums["route_\(route.rawValue)_gold"] / count }
        }
        let judged = HybridReward.Route.allCases.filter { $0 != .verifier }
        let judgedCount = judged.reduce(0) { $0 + sums["route_\($1.rawValue)_count"] }
        if judgedCount > 0 {
            figures["gold_judged_mean"] = judged.reduce(0) { $0 + sums["route_\($1.rawValue)_gold"] } / judgedCount
        }
        return figures
    }
}
