import Alignment
import Config
import Foundation
import Roles
import Tokenizers

/// What a reward source may read about one batch of rollouts (B responses).
struct RewardBatch {
    let texts: [String]             // [B] decoded responses
    let answers: [String?]          // [B] reference answers, where the prompt has one
    let tasks: [String]             // [B] the prompt's task ("arith", …)
    let questions: [String]         // [B] prompt texts
    let promptIndices: [Int]        // [B] index of the prompt in the run's prompt list
    let sequences: [[Int32]]        // [B] prompt + response tokens
    let promptLengths: [Int]        // [B]
    let headScores: [Double]        // [B] the reward head on the scoring pass
    let proxy: [Double]?            // [B] the learned proxies' reward (selection's pick, R2M's fusion or the heads' mean)
}

/// What a source with state learns from after an iteration's update.
struct RewardUpdate {
    let iteration: Int
    /// The policy's mean loss over this iteration's steps, averaged over the ranks.
    let policyLoss: Double
    let scored: LearnedRewards.Scored?
    let promptLengths: [Int]
    let session: PPOSession
}

/// One named term of PPO's reward (design §5): the reward is Σ weight × score over the
/// registered sources, and each source's mean and spread are logged as reward_<name>_mean/_std.
/// A source with state (learned heads) checkpoints it and updates it after each iteration.
protocol RewardSource: AnyObject {
    var name: String { get }
    var weight: Double { get }
    func scores(_ batch: RewardBatch) throws -> [Double]
    /// Trainable state saved with PPO's checkpoints (name → parameters and AdamW moments).
    func snapshots() -> [String: TrainableSnapshot]
    func restore(directory: String, snapshots: [String: TrainableSnapshot]) throws
    func writeState(directory: String) throws
    /// Learns from the iteration just done (online reward models, bandits); returns figures to log.
    func update(_ update: RewardUpdate) async throws -> [String: Double]
}

extension RewardSource {
    func snapshots() -> [String: TrainableSnapshot] { [:] }
    func restore(directory: String, snapshots: [String: TrainableSnapshot]) throws {}
    func writeState(directory: String) throws {}
    func update(_ update: RewardUpdate) async throws -> [String: Double] { [:] }
}

/// What building a source may use: the config, the run's prompts and roles.
struct RewardSourceContext {
    let config: PPOConfig
    let learned: LearnedRewards?
    let prompts: [PPOPrompt]
    let pool: [Int]
    let policy: any PolicyRole
    let scorer: HydraScorer
    let tokenizer: any Tokenizer
    let say: (String) -> Void
}

/// A source's entry in the registry: its name, whether a config uses it, and how to build it.
struct RewardSourceRegistration: Sendable {
    let name: String
    /// Config keys the source declares itself (its weight, its options), added to PPO's schema;
    /// the sources built in also read keys of `RewardSettings`.
    var keys: [ConfigKey] = []
    let isActive: @Sendable (PPOConfig) -> Bool
    /// Built after Pre-PPO has chosen the prompts (the source prepares per prompt).
    var needsPromptPool = false
    let make: @Sendable (RewardSourceContext) async throws -> any RewardSource
}

/// Every reward source PPO knows. A new source is one file (the type, its keys and its
/// registration) plus one line here; PPO's schema, LASeR's arms and the logged names come from
/// this list.
enum RewardSources {
    static let registry: [RewardSourceRegistration] = [
        RewardHeadSource.registration,
        VerifierSource.registration,
        FormatSource.registration,
        ProxySource.registration,
        HybridSource.registration,
        GenRMSource.registration,
    ]

    /// The names of the sources `config` uses, in registry order.
    static func names(for config: PPOConfig) -> [String] { registry.filter { $0.isActive(config) }.map(\.name) }

    /// The sources of `entries` that `context.config` uses, built in registry order.
    static func make(_ context: RewardSourceContext, from entries: [RewardSourceRegistration] = registry) async throws -> [any RewardSource] {
        var sources: [any RewardSource] = []
        for entry in entries where entry.isActive(context.config) { sources.append(try await entry.make(context)) }
        return sources
    }

    /// Each source's scores, weighted into the total (a `RewardBreakdown`).
    static func compose(_ sources: [any RewardSource], batch: RewardBatch) throws -> RewardBreakdown {
        var rewards = RewardBreakdown(count: batch.texts.count)
        for source in sources { rewards.add(source.name, values: try source.scores(batch), weight: source.weight) }
        return rewards
    }
}
