import Alignment
import Config
import Datasets
import Foundation
import Kernels
import Models
import Roles
import Tokenizers

/// The hybrid reward of Shen et al. 2025 (docs/algorithms.md §8.2): per prompt, the rule verifiers of
/// its task where it has them (e.g. exact answer + format rule), else the generative reward model
/// judging against the ground-truth answer, else the GenRM judging against the best of N SFT
/// samples as ranked by the reward model (proxy head 1). Hack resistance, strongest first:
/// verifier, GenRM with ground truth, GenRM with best-of-N. Tasks in rewards.proxy_tasks go to
/// proxy head 1 instead of the GenRM (a study's control: the verifier's share, the proxy elsewhere).
package final class HybridReward {
    package enum Route: String, CaseIterable {
        case verifier, genrmTruth = "genrm_truth", genrmBestOfN = "genrm_bon", proxy
    }
    /// Task → its rule verifiers (scores summed), from rewards.verifier_tasks.
    package let verifiers: [String: [any Verifier]]
    package let referenceTasks: Set<String>, proxyTasks: Set<String>
    package let genrm: GenerativeReward?
    /// Best-of-N references of the prompts routed to them (prompt index → response text).
    package var bestOfN: [Int: String] = [:]

    package init(
        verifiers: [String: [any Verifier]], referenceTasks: Set<String>, proxyTasks: Set<String> = [],
        genrm: GenerativeReward?
    ) {
        self.verifiers = verifiers
        self.referenceTasks = referenceTasks
        self.proxyTasks = proxyTasks
        self.genrm = genrm
    }

    package func route(task: String, hasAnswer: Bool) -> Route {
        if verifiers[task] != nil && hasAnswer { return .verifier }
        if proxyTasks.contains(task) { return .proxy }
        if referenceTasks.contains(task) && hasAnswer { return .genrmTruth }
        return .genrmBestOfN
    }

    /// The routed reward of each response, and each response's route; `proxy` [B]: proxy head 1's
    /// scores, needed when a prompt's task is routed to it.
    package func scores(
        prompts: [Int], questions: [String], tasks: [String], answers: [String?], texts: [String],
        proxy: [Double]? = nil
    ) throws -> (values: [Double], routes: [Route]) {
        let routes = prompts.indices.map { route(task: tasks[$0], hasAnswer: answers[$0] != nil) }
        var values = [Double](repeating: 0, count: texts.count)
        var judged: [(Int, (question: String, candidate: String, reference: String))] = []
        for i in texts.indices {
            switch routes[i] {
            case .verifier:
                values[i] = verifiers[tasks[i]]!.reduce(0) { $0 + $1.score(response: texts[i], answer: answers[i]) }
            case .proxy:
                guard let proxy else { throw TrainingError("hybrid reward: rewards.proxy_tasks needs proxy scores") }
                values[i] = proxy[i]
            case .genrmTruth: judged.append((i, (questions[i], texts[i], answers[i]!)))
            case .genrmBestOfN:
                guard let reference = bestOfN[prompts[i]] else {
                    throw TrainingError("hybrid reward: prompt \(prompts[i]) has no best-of-N reference")
                }
                judged.append((i, (questions[i], texts[i], reference)))
            }
        }
        if !judged.isEmpty {
            guard let genrm else {
                throw ConfigError("hybrid reward: prompts without a verifier need 'rewards.genrm_model'")
            }
            for (k, s) in try genrm.scores(judged.map(\.1)).enumerated() { values[judged[k].0] = s }
        }
        return (values, routes)
    }
}

extension HybridReward {
    /// Best-of-N references for the prompts the hybrid reward routes to them: N samples of the SFT
    /// policy, ranked by the reward model (`rewards.proxy_heads`' first head). Computed once.
    package static func bestOfNReferences(
        _ indices: [Int], prompts: [PPOPrompt], config: RewardConfig, policy: any PolicyRole, scorer: HydraScorer,
        tokenizer: any Tokenizer, learned: LearnedRewards?
    ) async throws -> [Int: String] {
        guard !indices.isEmpty else { return [:] }
        guard let learned else {
            throw ConfigError("hybrid reward: best-of-N references need a reward model in 'rewards.proxy_heads'")
        }
        let n = config.rewards.bonSamples  // ≥ 1, checked at load
        var out: [Int: String] = [:]
        for start in stride(from: 0, to: indices.count, by: 32) {
            let part = Array(indices[start..<min(start + 32, indices.count)])
            let repeated = part.flatMap { Array(repeating: prompts[$0].tokens, count: n) }
            let samples = try await policy.generate(
                prompts: repeated,
                options: SamplingOptions(
                    temperature: 1, maxNewTokens: config.maxNewTokens, eosTokenId: tokenizer.eosTokenId,
                    stopTokenIds: tokenizer.stopTokenIds,
                    seed: config.seed &+ 0xB0 &+ UInt64(start))
            ).tokens
            let sequences = zip(repeated, samples).map { $0 + $1 }
            let (_, last) = try await scorer.referenceAndLastHidden(sequences)
            let scores = learned.headScores(try learned.proxyStates(sequences, shared: last))[0]
            for (k, p) in part.enumerated() {
                let best = (k * n..<(k + 1) * n).max { scores[$0] < scores[$1] }!
                out[p] = tokenizer.decode(samples[best], skipSpecialTokens: true)
            }
        }
        return out
    }
}
