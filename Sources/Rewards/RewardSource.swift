import Alignment
import Cluster
import Config
import Datasets
import Foundation
import Kernels
import Roles
import Tokenizers

/// Why a batch is scored: a training iteration, or choosing prompts before training (Pre-PPO),
/// where a learned reward is its heads' mean (no bandit step, no fusion).
package enum RewardPurpose: Sendable { case training, selection }

/// The states of the scoring passes a source reads beyond the texts and the reward head.
package struct RewardPassNeeds: OptionSet, Sendable {
    package let rawValue: Int
    package init(rawValue: Int) { self.rawValue = rawValue }
    /// The shared adapters-off pass's last-token states (reward heads on the frozen trunk).
    package static let lastHidden = RewardPassNeeds(rawValue: 1)
    /// The policy's last-layer states at every position (LASeR's context, R2M's fusion).
    package static let policyHidden = RewardPassNeeds(rawValue: 2)
}

/// What a reward source may read about one batch of rollouts (B responses).
package struct RewardBatch {
    package let texts: [String]  // [B] decoded responses
    package let answers: [String?]  // [B] reference answers, where the prompt has one
    package let tasks: [String]  // [B] the prompt's task ("arith", …)
    package let questions: [String]  // [B] prompt texts
    package let promptIndices: [Int]  // [B] index of the prompt in the run's prompt list
    package let sequences: [[Int32]]  // [B] prompt + response tokens
    package let promptLengths: [Int]  // [B]
    package let headScores: [Double]  // [B] the reward head on the scoring pass
    package var lastHidden: [[Float]] = []  // [B][C] when a source needs `.lastHidden`
    package var policyHidden: [[Float]] = []  // [B][S·C] when a source needs `.policyHidden`
    package var iteration = 0  // 1-based; 0 before training
    package var purpose = RewardPurpose.training

    package init(
        texts: [String], answers: [String?], tasks: [String], questions: [String], promptIndices: [Int],
        sequences: [[Int32]],
        promptLengths: [Int], headScores: [Double]
    ) {
        self.texts = texts
        self.answers = answers
        self.tasks = tasks
        self.questions = questions
        self.promptIndices = promptIndices
        self.sequences = sequences
        self.promptLengths = promptLengths
        self.headScores = headScores
    }
}

/// The part of a PPO run's configuration the reward sources read.
package struct RewardConfig: Sendable {
    /// The whole resolved config, for keys a source declares itself (rewards.genrm, …).
    package let resolved: ResolvedConfig
    package let rewards: RewardSettings, laser: LaserSettings, r2m: R2MSettings
    /// run.seed, ppo.iterations, ppo.max_new_tokens and ppo.samples_per_prompt.
    package let seed: UInt64, iterations: Int, maxNewTokens: Int, samplesPerPrompt: Int
    /// data.task: the built-in task the prompts come from ("" for a prompts file).
    package let task: String
    /// The sources the run may use (`RewardSources.registry`, or more in a test).
    package let registry: [RewardSourceRegistration]
    /// The run's precision: reward and judge models it loads run their products in it (frozen).
    package let precision: Precision

    package init(
        resolved: ResolvedConfig, rewards: RewardSettings, laser: LaserSettings, r2m: R2MSettings, seed: UInt64,
        iterations: Int,
        maxNewTokens: Int, samplesPerPrompt: Int, task: String,
        registry: [RewardSourceRegistration] = RewardSources.registry, precision: Precision = .fp32
    ) {
        self.precision = precision
        self.resolved = resolved
        self.rewards = rewards
        self.laser = laser
        self.r2m = r2m
        self.seed = seed
        self.iterations = iterations
        self.maxNewTokens = maxNewTokens
        self.samplesPerPrompt = samplesPerPrompt
        self.task = task
        self.registry = registry
    }
}

/// What a source with state learns from after an iteration's update, and what it may run to
/// learn: the local policy (its states), the adapters-off scorer and the data-parallel ranks.
package struct RewardUpdate {
    package let iteration: Int
    package let promptLengths: [Int]  // [B] of this rank's batch
    /// [B] this rank's prompt + response tokens, `groupSize` consecutive samples per prompt.
    package let sequences: [[Int32]]
    /// [B][S−1] the policy's log-probs of each sequence's tokens at sampling time.
    package let oldLogProbs: [[Float]]
    package let groupSize: Int
    package let policy: LocalPolicy
    package let scorer: HydraScorer
    package let replicas: (any Transport)?

    package init(
        iteration: Int, promptLengths: [Int], sequences: [[Int32]], oldLogProbs: [[Float]], groupSize: Int,
        policy: LocalPolicy,
        scorer: HydraScorer, replicas: (any Transport)?
    ) {
        self.iteration = iteration
        self.promptLengths = promptLengths
        self.sequences = sequences
        self.oldLogProbs = oldLogProbs
        self.groupSize = groupSize
        self.policy = policy
        self.scorer = scorer
        self.replicas = replicas
    }
}

/// One named term of PPO's reward (docs/architecture.md §5): the reward is Σ weight × score over the
/// registered sources, and each source's mean and spread are logged as reward_<name>_mean/_std.
/// A source may also work on the batch before scoring it (`prepare`), choose the batch's whole
/// reward (a bandit over sources), report figures of its own, keep state in checkpoints and learn
/// after each iteration.
package protocol RewardSource: AnyObject {
    var name: String { get }
    var weight: Double { get }
    /// Async work on the batch before `scores` (a learned reward's heads, fusion or bandit pick).
    /// `replicas` (the ranks rolling out) is nil when selecting prompts: ranks then score
    /// different numbers of candidates, so no collective may run.
    func prepare(_ batch: RewardBatch, replicas: (any Transport)?) async throws
    func scores(_ batch: RewardBatch) throws -> [Double]
    /// The batch's whole reward when this source chooses it (LASeR over named sources), else nil.
    func chosenTotal(_ rewards: RewardBreakdown) -> [Double]?
    /// This rank's sums of the source's own figures over the batch (added over every rank);
    /// `gold` is each sample's gold reward.
    func sums(_ batch: RewardBatch, gold: [Double]) -> NamedSums
    /// The figures logged from the sums of every rank, over `samples` responses.
    func figures(_ sums: NamedSums, samples: Double) -> [String: Double]
    /// Trainable state saved with PPO's checkpoints (name → parameters and AdamW moments).
    func snapshots() -> [String: TrainableSnapshot]
    func restore(directory: String, snapshots: [String: TrainableSnapshot]) throws
    func writeState(directory: String) throws
    /// Learns from the iteration just done (online reward models, bandits); returns figures to log.
    func update(_ update: RewardUpdate) async throws -> [String: Double]
}

extension RewardSource {
    package func prepare(_ batch: RewardBatch, replicas: (any Transport)?) async throws {}
    package func chosenTotal(_ rewards: RewardBreakdown) -> [Double]? { nil }
    package func sums(_ batch: RewardBatch, gold: [Double]) -> NamedSums { NamedSums() }
    package func figures(_ sums: NamedSums, samples: Double) -> [String: Double] { [:] }
    package func snapshots() -> [String: TrainableSnapshot] { [:] }
    package func restore(directory: String, snapshots: [String: TrainableSnapshot]) throws {}
    package func writeState(directory: String) throws {}
    package func update(_ update: RewardUpdate) async throws -> [String: Double] { [:] }
}

/// What building a source may use: the config, the run's prompts, roles and reward models.
package struct RewardSourceContext {
    package let config: RewardConfig
    /// The learned reward models (`rewards.proxy_heads`, LASeR's bandit, R2M's fusion), when configured.
    package let learned: LearnedRewards?
    package let prompts: [PPOPrompt]
    /// The prompts the run may draw (with Pre-PPO: every candidate, which the selection scores).
    package let pool: [Int]
    /// Prompts held out for a source's own checks (LASeR's held-out score): [BOS] x.
    package let heldOutPrompts: [[Int32]]
    package let policy: any PolicyRole
    /// This rank's own policy (a source that reads its states runs colocated).
    package let localPolicy: LocalPolicy
    package let scorer: HydraScorer
    package let tokenizer: any Tokenizer
    package let say: (String) -> Void
    /// The ranks of this host that keep frozen weights once (a judge model's), or nil.
    package let host: (any Transport)?

    package init(
        config: RewardConfig, learned: LearnedRewards?, prompts: [PPOPrompt], pool: [Int], heldOutPrompts: [[Int32]],
        policy: any PolicyRole, localPolicy: LocalPolicy, scorer: HydraScorer, tokenizer: any Tokenizer,
        say: @escaping (String) -> Void, host: (any Transport)? = nil
    ) {
        self.config = config
        self.learned = learned
        self.prompts = prompts
        self.pool = pool
        self.heldOutPrompts = heldOutPrompts
        self.policy = policy
        self.localPolicy = localPolicy
        self.scorer = scorer
        self.tokenizer = tokenizer
        self.say = say
        self.host = host
    }
}

/// A source's entry in the registry: its name, whether a config uses it, how to build it, and
/// what the stage needs to know of it without knowing it.
package struct RewardSourceRegistration: Sendable {
    package let name: String
    /// Config keys the source declares itself (its weight, its options), added to PPO's schema;
    /// the sources built in also read keys of `RewardSettings`.
    package var keys: [ConfigKey] = []
    /// Part of the run's gold reward (the hidden ground truth a study compares methods by).
    package var isGold: @Sendable (RewardConfig) -> Bool = { _ in false }
    /// Shown in the progress line after the reward (the first active such source).
    package var isHeadline: @Sendable (RewardConfig) -> Bool = { _ in false }
    /// A named source LASeR's bandit may choose as an arm (laser.arms).
    package var isArm = true
    /// The scoring passes' states the source reads.
    package var needs: @Sendable (RewardConfig) -> RewardPassNeeds = { _ in [] }
    /// Checks the config at load, before anything is built (a refusal names the keys).
    package var validate: @Sendable (RewardConfig) throws -> Void = { _ in }
    package let isActive: @Sendable (RewardConfig) -> Bool
    package let make: @Sendable (RewardSourceContext) async throws -> any RewardSource
}

/// Every reward source PPO knows. A new source is one file (the type, its keys and its
/// registration) plus one line here; PPO's schema, LASeR's arms, the gold reward, the progress
/// line and the logged names come from this list.
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
        ExternalRewardSource.registration,
    ]

    /// The registrations `config` uses, in registry order.
    package static func active(for config: RewardConfig) -> [RewardSourceRegistration] {
        config.registry.filter { $0.isActive(config) }
    }

    /// The names of the sources `config` uses, in registry order.
    package static func names(for config: RewardConfig) -> [String] { active(for: config).map(\.name) }

    /// Every active source's validation (at load).
    package static func validate(_ config: RewardConfig) throws {
        for entry in active(for: config) { try entry.validate(config) }
    }

    /// The passes' states the sources of `config` read.
    package static func needs(for config: RewardConfig) -> RewardPassNeeds {
        active(for: config).reduce(into: []) { $0.formUnion($1.needs(config)) }
    }

    /// The sources of `config` that read the passes' states (they need every role colocated).
    package static func namesReadingStates(for config: RewardConfig) -> [String] {
        active(for: config).filter { !$0.needs(config).isEmpty }.map(\.name)
    }

    /// The named sources LASeR may choose between.
    package static func armNames(for config: RewardConfig) -> [String] {
        active(for: config).filter(\.isArm).map(\.name)
    }

    /// The name of the source the progress line shows after the reward, if any.
    package static func headline(for config: RewardConfig) -> String? {
        active(for: config).first { $0.isHeadline(config) }?.name
    }

    /// The sources `context.config` uses, built in registry order.
    package static func make(_ context: RewardSourceContext) async throws -> [any RewardSource] {
        var sources: [any RewardSource] = []
        for entry in active(for: context.config) { sources.append(try await entry.make(context)) }
        return sources
    }

    /// Each source prepared, then its scores weighted into the total (a `RewardBreakdown`); a
    /// source that chooses the batch's reward replaces the total.
    package static func compose(_ sources: [any RewardSource], batch: RewardBatch, replicas: (any Transport)?)
        async throws -> RewardBreakdown
    {
        for source in sources { try await source.prepare(batch, replicas: replicas) }
        var rewards = RewardBreakdown(count: batch.texts.count)
        for source in sources { rewards.add(source.name, values: try source.scores(batch), weight: source.weight) }
        for source in sources { if let chosen = source.chosenTotal(rewards) { rewards.total = chosen } }
        return rewards
    }

    /// The gold reward of each sample: the unweighted sum of the gold sources' values (0 when the
    /// run has none, as for instruction following).
    package static func gold(_ rewards: RewardBreakdown, config: RewardConfig) -> [Double] {
        var gold = [Double](repeating: 0, count: rewards.total.count)
        for entry in active(for: config) where entry.isGold(config) {
            guard let values = rewards.bySource[entry.name] else { continue }
            for i in gold.indices { gold[i] += values[i] }
        }
        return gold
    }
}
