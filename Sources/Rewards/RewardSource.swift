import Alignment
import Cluster
import Config
import Datasets
import Foundation
import Roles
import Tokenizers

/// What a reward source may read about one batch of rollouts (B responses).
package struct RewardBatch {
    package let texts: [String]             // [B] decoded responses
    package let answers: [String?]          // [B] reference answers, where the prompt has one
    package let tasks: [String]             // [B] the prompt's task ("arith", …)
    package let questions: [String]         // [B] prompt texts
    package let promptIndices: [Int]        // [B] index of the prompt in the run's prompt list
    package let sequences: [[Int32]]        // [B] prompt + response tokens
    package let promptLengths: [Int]        // [B]
    package let headScores: [Double]        // [B] the reward head on the scoring pass
    package let proxy: [Double]?            // [B] the learned proxies' reward (selection's pick, R2M's fusion or the heads' mean)

    package init(texts: [String], answers: [String?], tasks: [String], questions: [String], promptIndices: [Int], sequences: [[Int32]],
         promptLengths: [Int], headScores: [Double], proxy: [Double]?) {
        self.texts = texts; self.answers = answers; self.tasks = tasks; self.questions = questions; self.promptIndices = promptIndices
        self.sequences = sequences; self.promptLengths = promptLengths; self.headScores = headScores; self.proxy = proxy
    }
}

/// The part of a PPO run's configuration the reward sources read.
package struct RewardConfig: Sendable {
    /// The whole resolved config, for keys a source declares itself (rewards.genrm, …).
    package let resolved: ResolvedConfig
    package let rewards: RewardSettings, laser: LaserSettings, r2m: R2MSettings
    /// run.seed, ppo.iterations and ppo.max_new_tokens.
    package let seed: UInt64, iterations: Int, maxNewTokens: Int

    package init(resolved: ResolvedConfig, rewards: RewardSettings, laser: LaserSettings, r2m: R2MSettings, seed: UInt64, iterations: Int, maxNewTokens: Int) {
        self.resolved = resolved; self.rewards = rewards; self.laser = laser; self.r2m = r2m
        self.seed = seed; self.iterations = iterations; self.maxNewTokens = maxNewTokens
    }
}

/// What a source with state learns from after an iteration's update, and what it may run to
/// learn: the local policy (its states), the adapters-off scorer and the data-parallel ranks.
package struct RewardUpdate {
    package let iteration: Int
    package let scored: LearnedRewards.Scored?
    package let promptLengths: [Int]            // [B] of this rank's batch
    package let policy: LocalPolicy
    package let scorer: HydraScorer
    package let replicas: (any Transport)?
    /// LASeR's held-out prompts ([BOS] x).
    package let heldOutPrompts: [[Int32]]
    /// [B] this rank's prompt + response tokens, `groupSize` consecutive samples per prompt.
    package let sequences: [[Int32]]
    package let groupSize: Int
    package let eosTokenId: Int32?

    package init(iteration: Int, scored: LearnedRewards.Scored?, promptLengths: [Int], policy: LocalPolicy, scorer: HydraScorer,
         replicas: (any Transport)?, heldOutPrompts: [[Int32]], sequences: [[Int32]], groupSize: Int, eosTokenId: Int32?) {
        self.iteration = iteration; self.scored = scored; self.promptLengths = promptLengths
        self.policy = policy; self.scorer = scorer; self.replicas = replicas
        self.heldOutPrompts = heldOutPrompts; self.sequences = sequences; self.groupSize = groupSize; self.eosTokenId = eosTokenId
    }
}

/// One named term of PPO's reward (design §5): the reward is Σ weight × score over the
/// registered sources, and each source's mean and spread are logged as reward_<name>_mean/_std.
/// A source with state (learned heads) checkpoints it and updates it after each iteration.
package protocol RewardSource: AnyObject {
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
    package func snapshots() -> [String: TrainableSnapshot] { [:] }
    package func restore(directory: String, snapshots: [String: TrainableSnapshot]) throws {}
    package func writeState(directory: String) throws {}
    package func update(_ update: RewardUpdate) async throws -> [String: Double] { [:] }
}

/// What building a source may use: the config, the run's prompts and roles.
package struct RewardSourceContext {
    package let config: RewardConfig
    package let learned: LearnedRewards?
    package let prompts: [PPOPrompt]
    /// The prompts the run may draw (with Pre-PPO: every candidate, which the selection scores).
    package let pool: [Int]
    package let policy: any PolicyRole
    package let scorer: HydraScorer
    package let tokenizer: any Tokenizer
    package let say: (String) -> Void

    package init(config: RewardConfig, learned: LearnedRewards?, prompts: [PPOPrompt], pool: [Int], policy: any PolicyRole, scorer: HydraScorer,
         tokenizer: any Tokenizer, say: @escaping (String) -> Void) {
        self.config = config; self.learned = learned; self.prompts = prompts; self.pool = pool; self.policy = policy
        self.scorer = scorer; self.tokenizer = tokenizer; self.say = say
    }
}

/// A source's entry in the registry: its name, whether a config uses it, and how to build it.
package struct RewardSourceRegistration: Sendable {
    package let name: String
    /// Config keys the source declares itself (its weight, its options), added to PPO's schema;
    /// the sources built in also read keys of `RewardSettings`.
    package var keys: [ConfigKey] = []
    package let isActive: @Sendable (RewardConfig) -> Bool
    package let make: @Sendable (RewardSourceContext) async throws -> any RewardSource
}

/// Every reward source PPO knows. A new source is one file (the type, its keys and its
/// registration) plus one line here; PPO's schema, LASeR's arms and the logged names come from
/// this list.
package enum RewardSources {
    package static let registry: [RewardSourceRegistration] = [
        RewardHeadSource.registration,
        VerifierSource.registration,
        FormatSource.registration,
        ProxySource.registration,
        R2MSource.registration,
        HybridSource.registration,
        GenRMSource.registration,
        InstructionSource.registration,
    ]

    /// The names of the sources `config` uses, in registry order.
    package static func names(for config: RewardConfig) -> [String] { registry.filter { $0.isActive(config) }.map(\.name) }

    /// The sources `context.config` uses, built in registry order.
    package static func make(_ context: RewardSourceContext) async throws -> [any RewardSource] {
        var sources: [any RewardSource] = []
        for entry in registry where entry.isActive(context.config) { sources.append(try await entry.make(context)) }
        return sources
    }

    /// Each source's scores, weighted into the total (a `RewardBreakdown`).
    package static func compose(_ sources: [any RewardSource], batch: RewardBatch) throws -> RewardBreakdown {
        var rewards = RewardBreakdown(count: batch.texts.count)
        for source in sources { rewards.add(source.name, values: try source.scores(batch), weight: source.weight) }
        return rewards
    }
}
