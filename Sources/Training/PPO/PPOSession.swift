import Alignment
import Cluster
import Config
import Datasets
import Foundation
import Kernels
import Models
import Rewards
import Roles
import Runs
import Tokenizers

/// The roles of one PPO run. Hydra: every role over one frozen trunk with LoRA adapters;
/// separate: a full copy per role. Reference and reward answer locally or from their ranks.
struct PPORoles {
    let base: any CausalLM
    let rewardHead: ScalarHead, valueHead: ScalarHead
    let policyTrunk: any CausalLM
    let policyLoRA: LoRAAdapter?, criticLoRA: LoRAAdapter?
    let policy: LocalPolicy
    let critic: LocalCritic
    let scorer: HydraScorer
    let separateReward: LocalReward?

    init(config cfg: PPOConfig, base: any CausalLM, rewardHead: ScalarHead, replicas: (any Transport)?) throws {
        let hydra = cfg.layout == .hydra
        var rng = RNG(seed: cfg.run.seed)
        self.base = base
        self.rewardHead = rewardHead
        valueHead = ScalarHead(channels: base.config.channels)
        valueHead.parameters.copy(from: rewardHead.parameters)  // critic starts as the reward model (Hydra §1.3)
        policyTrunk = hydra ? base : try base.clone()
        policyLoRA = hydra ? try makeAdapter(cfg.loraConfig, for: base.config) : nil
        criticLoRA = hydra ? try makeAdapter(cfg.loraConfig, for: base.config) : nil
        policyLoRA?.initialize(rng: &rng)
        criticLoRA?.initialize(rng: &rng)
        // The update alternates policy and critic steps on the same minibatch: one activation set.
        let pool = ActivationPool()
        policy = LocalPolicy(
            trunk: policyTrunk, adapter: policyLoRA,
            hyper: AdamWHyperparameters(learningRate: cfg.ppo.lr, weightDecay: 0), replicas: replicas, pool: pool,
            temperature: cfg.ppo.temperature)
        critic = LocalCritic(
            trunk: hydra ? base : try base.clone(), adapter: criticLoRA, head: valueHead,
            hyper: AdamWHyperparameters(learningRate: cfg.ppo.criticLR, weightDecay: 0), replicas: replicas,
            trainTrunk: !hydra, pool: pool)
        scorer = HydraScorer(trunk: base, rewardHead: rewardHead, temperature: cfg.ppo.temperature)
        let rewardTrunk = hydra ? nil : try base.clone()
        rewardTrunk?.use(base.precision, frozen: true)
        rewardTrunk?.keepOnlyBF16()
        separateReward = rewardTrunk.map { LocalReward(trunk: $0, head: rewardHead) }
    }

    /// What this process hosts as a placed reward role.
    var localReward: any RewardRole { separateReward.map { $0 as any RewardRole } ?? scorer }
}

/// A model and prompts given directly (`rlhf bench ppo`) instead of read from model.init_from and data.*.
public struct PPOInputs {
    let base: any CausalLM, rewardHead: ScalarHead, tokenizer: any Tokenizer, prompts: [[Int32]]
    public init(base: any CausalLM, rewardHead: ScalarHead, tokenizer: any Tokenizer, prompts: [[Int32]]) {
        self.base = base
        self.rewardHead = rewardHead
        self.tokenizer = tokenizer
        self.prompts = prompts
    }
}

/// The data of one PPO run: prompts, held-out examples, PPO-ptx demonstrations.
struct PPOData {
    let prompts: [PPOPrompt]
    let evalExamples: [SFTExample]
    /// ifeval: held-out prompts whose replies are checked against their instructions.
    var instructionEval: [PPOPrompt] = []
    let ptxDemos: [TokenizedExample]

    /// Prompts alone (token ids), nothing held out.
    init(prompts: [[Int32]]) {
        self.prompts = prompts.map { PPOPrompt(tokens: $0, answer: nil) }
        evalExamples = []
        ptxDemos = []
    }

    /// Every prompt, demonstration and pair is tokenised and checked here, before the first
    /// iteration; `notes` says what was found.
    init(config cfg: PPOConfig, tokenizer: any Tokenizer, notes: DataNotes) throws {
        func sourced(_ p: PPOPrompt, _ source: String) -> PPOPrompt {
            var p = p
            p.source = source
            return p
        }
        func prompt(
            _ text: String, answer: String?, task: String, chatRendered: Bool = false, extras: [String: String] = [:]
        ) -> PPOPrompt {
            PPOPrompt(
                tokens: chatRendered
                    ? tokenizer.encode(text)
                    : SFTTokenization.promptTokens(SFTExample(prompt: text, completion: ""), tokenizer: tokenizer),
                answer: answer, task: task, text: text, extras: extras)
        }
        let arith = cfg.data.task == .arith ? cfg.data.arithTask : nil
        if cfg.data.task == .ifeval {
            guard let chat = tokenizer.chat else {
                throw ConfigError(
                    "data.task ifeval sends its prompts as user turns through the model's chat template, and "
                        + "\(tokenizer.summary) has none"
                )
            }
            func render(_ p: IFEvalTask.Prompt) throws -> PPOPrompt {
                let text = try chat.render(
                    [.object(JinjaObject([("role", .string("user")), ("content", .string(p.text))]))],
                    addGenerationPrompt: true)
                return prompt(text, answer: p.spec, task: IFEvalTask.taskName, chatRendered: true)
            }
            let task = cfg.data.ifevalTask
            prompts = try Self.fitting(try task.train.map(render), task: "ifeval", cfg, notes)
            instructionEval = try task.eval.prefix(cfg.cadence.evalMaxExamples).map(render)
            evalExamples = []
        } else if let task = arith {
            prompts = try Self.fitting(
                task.train.map { prompt(ArithTask.prompt($0), answer: ArithTask.answer($0), task: "arith") },
                task: "arith", cfg, notes)
            evalExamples = Array(task.evalExamples().prefix(cfg.cadence.evalMaxExamples))
        } else {
            prompts = try notes.keepingFitting(
                try JSONL.prompts(path: cfg.data.train, chat: tokenizer.chat, notes: notes)
            ) {
                try Self.fitting(
                    sourced(
                        prompt(
                            $0.prompt, answer: $0.answer, task: $0.task ?? "", chatRendered: $0.chatRendered,
                            extras: $0.extras), $0.source),
                    source: $0.source, cfg)
            }
            guard !prompts.isEmpty else { throw DatasetError("\(cfg.data.train): no prompts") }
            evalExamples =
                cfg.data.eval.isEmpty
                ? []
                : Array(
                    try JSONL.sft(path: cfg.data.eval, chat: tokenizer.chat, notes: notes).prefix(
                        cfg.cadence.evalMaxExamples))
        }
        ptxDemos = try Self.ptxDemonstrations(cfg, tokenizer: tokenizer, notes: notes)
    }

    /// PPO-ptx (InstructGPT): SFT demonstrations for an extra policy step per minibatch (none
    /// when ppo.ptx_coef is 0), tokenised and checked.
    static func ptxDemonstrations(_ cfg: PPOConfig, tokenizer: any Tokenizer, notes: DataNotes) throws
        -> [TokenizedExample]
    {
        var demos: [SFTExample] = []
        if cfg.ppo.ptxCoef > 0 {
            if cfg.data.task == .arith {
                demos = cfg.data.arithTask.sftExamples()
            } else {
                guard !cfg.ptxFile.isEmpty else {
                    throw ConfigError("ppo.ptx_coef > 0 needs 'data.ptx' (SFT demonstrations JSONL)")
                }
                demos = try JSONL.sft(path: cfg.ptxFile, chat: tokenizer.chat, notes: notes)
            }
        }
        return try notes.keepingFitting(demos) {
            try SFTTokenization.tokenize($0, tokenizer: tokenizer, maxLength: cfg.maxLength)
        }
    }

    /// A built-in task's prompts that fit (see below), each named by its position.
    static func fitting(_ prompts: [PPOPrompt], task: String, _ cfg: PPOConfig, _ notes: DataNotes) throws
        -> [PPOPrompt]
    {
        try notes.keepingFitting(Array(prompts.enumerated())) {
            try fitting($0.element, source: "data.task \(task), prompt \($0.offset + 1)", cfg)
        }
    }

    /// A prompt leaves room for ppo.max_new_tokens within train.max_length (the rollout's
    /// sequences are sized by it), or it is too long.
    static func fitting(_ p: PPOPrompt, source: String, _ cfg: PPOConfig) throws -> PPOPrompt {
        guard p.tokens.count + cfg.ppo.maxNewTokens <= cfg.maxLength else {
            throw TooLongExample(
                source: source, tokens: p.tokens.count + cfg.ppo.maxNewTokens, maxLength: cfg.maxLength,
                note: "the prompt's \(p.tokens.count) + ppo.max_new_tokens \(cfg.ppo.maxNewTokens)")
        }
        return p
    }
}

/// Everything one PPO run keeps between iterations: its roles, data, reward sources, run folder
/// and the state that changes (KL coefficient, prompt order, PPO-ptx cursor). `PPOStage` builds it
/// and runs `iteration(_:)` (PPOPhases.swift) in a loop; `rlhf bench ppo` runs the same iterations.
final class PPOSession {
    let cfg: PPOConfig
    let transport: any Transport
    let say: (String) -> Void
    let tokenizer: any Tokenizer
    let roles: PPORoles
    let data: PPOData
    let placement: Placement
    /// Colocated: every rank rolls out its share and the trainable roles all-reduce gradients.
    let colocated: Bool
    let replicas: (any Transport)?
    let clients: [Int: RoleClient]
    /// Each role where the placement puts it: local, or a proxy to its rank. Rollouts are
    /// generated and training steps taken wherever the policy and critic live.
    let policy: any PolicyRole, critic: any CriticRole, reference: any ReferenceRole, reward: any RewardRole
    /// Hydra with reference and reward local: both from one adapters-off pass.
    let onePass: Bool
    /// The learned reward models the run's sources share (proxy heads, bandit, fusion), if any.
    let rewardModels: LearnedRewards?
    /// The ranks of this host that keep a judge model once (colocated, sharing), or nil.
    let sourceHost: (any Transport)?
    /// The states of the scoring passes the sources read, and the source the progress line shows.
    let sourceNeeds: RewardPassNeeds, headline: String?
    var sources: [any RewardSource] = []
    /// Prompts per rank rolling out.
    let myPrompts: Int
    var kl: AdaptiveKLController
    /// Pre-PPO's prompts, and the curriculum's (drawn first for `curriculumIterations`).
    var pool: [Int] = [], priority: [Int] = [], curriculumIterations = 0
    var order: [Int] = [], orderKey: (pool: Int, epoch: Int)?
    var ptxCursor: Int
    /// samples.jsonl of the run (rank 0), nil: none.
    var samplesFile: String?

    var scorer: HydraScorer { roles.scorer }

    /// Loads the model, checks the memory plan, builds the roles and reads the data. Returns nil
    /// on a rank that only hosted placed roles (it has served them until rank 0 stopped it).
    static func start(
        config cfg: PPOConfig, transport: any Transport, say: @escaping (String) -> Void,
        inputs: PPOInputs? = nil
    ) async throws -> PPOSession? {
        let tokenizer = try inputs?.tokenizer ?? Tokenizers.load(cfg.run.initFrom)
        // The base is never stepped: Hydra trains adapters on it, the separate layout clones it.
        // It is kept once per host: the ranks of a host share its weights.
        let host = try await cfg.run.hostGroup(transport), sharing = cfg.run.sharing(host)
        let base: any CausalLM
        if let given = inputs?.base {
            cfg.run.apply(to: given, frozen: true)
            base = try await HostWeights.share(given, host: sharing)
        } else {
            base = try await cfg.run.loadFrozen(cfg.run.initFrom, host: sharing)
        }
        try checkContext(base.config, maxLength: cfg.maxLength)
        let rewardHead = try inputs?.rewardHead ?? loadRewardHead(cfg, channels: base.config.channels)
        let placement = try Placement.parse(cfg.run.placement, worldSize: transport.size)
        let colocated = placement.remote.isEmpty
        // Placed: rank 0 drives and every other rank serves roles; a rank with none would only wait.
        if !colocated, let idle = (1..<transport.size).first(where: { placement.servers[$0] == nil }) {
            throw ConfigError(
                "'placement': rank \(idle) hosts no role (\(placement.description)); place a role there or start "
                    + "fewer ranks"
            )
        }
        try checkMemoryPlan(
            cfg, model: base.config, ranksRollingOut: colocated ? transport.size : 1,
            host: HostShare(ranks: host?.size ?? 1, sharesFrozenWeights: sharing != nil), say: say)
        let replicas: (any Transport)? = colocated && transport.size > 1 ? transport : nil
        let roles = try PPORoles(config: cfg, base: base, rewardHead: rewardHead, replicas: replicas)
        let rewardModels = try await learnedRewards(cfg, roles: roles, host: sharing, say: say)
        // A rank that only hosts placed roles serves them and is done. It cannot stop the run by
        // itself (rank 0 drives, and ends the serving with a checkpoint when it is signalled).
        if !colocated && transport.rank != 0 {
            try await HostWeights.keepOnlyBF16(base, host: sharing)  // the clones are made
            try await serve(placement, roles: roles, transport: transport)
            return nil
        }
        // A judge model is read by the ranks that build reward sources: every rank when colocated.
        let session = try PPOSession(
            cfg, transport: transport, say: say, tokenizer: tokenizer, roles: roles, placement: placement,
            replicas: replicas, prompts: inputs?.prompts, rewardModels: rewardModels,
            sourceHost: colocated ? sharing : nil)
        // The clones are made and the proxies compared with it: the frozen base (Hydra's trunk, the
        // separate layout's reference) keeps its matrices in bf16 only from here on, in bf16.
        try await HostWeights.keepOnlyBF16(base, host: sharing)
        if let line = HostWeights.summary(base, host: sharing) { say(line) }
        return session
    }

    /// The proxies, read by every rank of the host (a proxy's own trunk is kept once per host), also
    /// one that only serves placed roles.
    static func learnedRewards(
        _ cfg: PPOConfig, roles: PPORoles, host sharing: (any Transport)?, say: (String) -> Void
    ) async throws -> LearnedRewards? {
        let rewards = cfg.rewardConfig
        let rewardModels = try await LearnedRewards.make(
            rewards, base: roles.base, originalHead: roles.rewardHead, seed: cfg.run.seed,
            namedArms: RewardSources.armNames(for: rewards), host: sharing)
        for (k, trunk) in (rewardModels?.trunks ?? []).enumerated() {
            if let trunk, let line = HostWeights.summary(trunk, host: sharing) { say("proxy\(k + 1)'s trunk: \(line)") }
        }
        return rewardModels
    }

    /// A rank other than 0 with placed roles: serves them until rank 0 ends the run.
    static func serve(_ placement: Placement, roles: PPORoles, transport: any Transport) async throws {
        StopRequest.markServingRank()
        if let hosted = placement.servers[transport.rank] {
            try await RoleServer(
                transport: transport, policy: hosted.contains(.policy) ? roles.policy : nil,
                critic: hosted.contains(.critic) ? roles.critic : nil,
                reference: hosted.contains(.reference) ? roles.scorer : nil,
                reward: hosted.contains(.reward) ? roles.localReward : nil
            ).serve()
        }
        try await transport.barrier()
    }

    private init(
        _ cfg: PPOConfig, transport: any Transport, say: @escaping (String) -> Void, tokenizer: any Tokenizer,
        roles: PPORoles,
        placement: Placement, replicas: (any Transport)?, prompts: [[Int32]]?, rewardModels: LearnedRewards?,
        sourceHost: (any Transport)?
    ) throws {
        self.cfg = cfg
        self.transport = transport
        self.say = say
        self.tokenizer = tokenizer
        self.roles = roles
        self.placement = placement
        self.replicas = replicas
        colocated = placement.remote.isEmpty
        clients = Dictionary(
            uniqueKeysWithValues: placement.servers.keys.map { ($0, RoleClient(transport: transport, host: $0)) })
        policy = placement.remote[.policy].map { [clients] in RemotePolicy(clients[$0]!) } ?? roles.policy
        critic = placement.remote[.critic].map { [clients] in RemoteCritic(clients[$0]!) } ?? roles.critic
        reference = placement.remote[.reference].map { [clients] in RemoteReference(clients[$0]!) } ?? roles.scorer
        reward = placement.remote[.reward].map { [clients] in RemoteReward(clients[$0]!) } ?? roles.localReward
        onePass = cfg.layout == .hydra && placement.remote[.reference] == nil && placement.remote[.reward] == nil
        let rewards = cfg.rewardConfig
        self.rewardModels = rewardModels
        self.sourceHost = sourceHost
        (sourceNeeds, headline) = (RewardSources.needs(for: rewards), RewardSources.headline(for: rewards))
        guard sourceNeeds.isEmpty || (onePass && colocated) else {
            let readers = RewardSources.namesReadingStates(for: rewards).joined(separator: ", ")
            throw ConfigError(
                "'placement': the reward sources \(readers) read the policy's and the shared trunk's states in one "
                    + "pass; they need layout hydra with every role colocated")
        }
        let notes = cfg.data.notes()
        data = try prompts.map { PPOData(prompts: $0) } ?? PPOData(config: cfg, tokenizer: tokenizer, notes: notes)
        for line in notes.report { say(line) }
        ptxCursor = transport.rank * 7919
        let dataRanks = colocated ? transport.size : 1
        guard cfg.ppo.prompts % dataRanks == 0 else {
            throw ConfigError(
                "'ppo.prompts' (\(cfg.ppo.prompts)) must be a multiple of the ranks rolling out (\(dataRanks))")
        }
        myPrompts = cfg.ppo.prompts / dataRanks
        try Self.checkBatches(cfg.ppo, share: myPrompts * cfg.ppo.samples, ranks: dataRanks)
        kl = AdaptiveKLController(
            beta: cfg.ppo.klCoef, target: cfg.ppo.klTarget > 0 ? cfg.ppo.klTarget : nil, horizon: cfg.ppo.klHorizon)
    }

    /// How the rollout is cut, when it is (`ppo.rollout_batch`).
    var rolloutLine: String {
        cfg.ppo.rolloutBatch > 0 ? ", rollout units of \(cfg.ppo.rolloutBatch) (seeded by their place)" : ""
    }

    /// The ranks rolling out (every rank colocated; one driving placed roles).
    var dataRanks: Int { colocated ? transport.size : 1 }

    /// Rollout units that divide a rank's `share` of sequences, micro-batches that divide a
    /// minibatch evenly over the `ranks` rolling out.
    static func checkBatches(_ p: PPOSettings, share: Int, ranks: Int) throws {
        if p.rolloutBatch > 0, share % p.rolloutBatch != 0 {
            throw ConfigError(
                "'ppo.rollout_batch' (\(p.rolloutBatch)) must divide a rank's share of each iteration's sequences "
                    + "(\(share): ppo.prompts / \(ranks) ranks × ppo.samples_per_prompt)")
        }
        let micro = p.microBatchSize > 0 ? p.microBatchSize : max(1, p.minibatchSize / ranks)
        if p.minibatchSize % (micro * ranks) != 0 {
            throw ConfigError(
                "'ppo.minibatch_size' (\(p.minibatchSize)) must be a multiple of ppo.micro_batch_size (\(micro)) × the "
                    + "ranks rolling out (\(ranks))")
        }
    }

    /// The reward head the SFT checkpoint carries (Hydra-SFT), or a zero head when no weight reads it.
    static func loadRewardHead(_ cfg: PPOConfig, channels: Int) throws -> ScalarHead {
        let headPath = (cfg.run.initFrom as NSString).appendingPathComponent(ScalarHeadIO.fileName)
        if FileManager.default.fileExists(atPath: headPath) {
            return try ScalarHeadIO.load(directory: cfg.run.initFrom, channels: channels)
        }
        guard cfg.rewards.rewardHead == 0 else {
            throw ConfigError("rewards.reward_head > 0 needs \(headPath) (train with hydra-sft)")
        }
        return ScalarHead(channels: channels)
    }

    /// The memory plan, printed before anything big is allocated; refuses to start above the limit.
    static func checkMemoryPlan(
        _ cfg: PPOConfig, model: any ModelConfiguration, ranksRollingOut: Int, host: HostShare, say: (String) -> Void
    ) throws {
        let plan = try MemoryPlan(cfg, model: model, ranksRollingOut: ranksRollingOut, host: host)
        say(plan.description)
        let advice = "use layout: hydra, smaller ppo.minibatch_size or fewer ppo.prompts × samples"
        if let limit = cfg.memoryLimitBytes ?? MemoryPlan.defaultLimitBytes, plan.totalBytes > limit {
            throw ConfigError(
                String(
                    format:
                        "the memory plan needs %.1f GiB per process, above the limit of %.1f GiB (memory.limit_gib); ",
                    plan.totalBytes / 1_073_741_824, limit / 1_073_741_824) + advice)
        }
        // The machine holds every rank of the host: their sum must fit in it too (colocated, where
        // every rank runs this plan; with memory.limit_gib the user's per-process limit decides).
        if host.ranks > 1, ranksRollingOut > 1, cfg.memoryLimitBytes == nil, let machine = MemoryPlan.defaultLimitBytes,
            plan.hostBytes > machine
        {
            throw ConfigError(
                String(
                    format: "the memory plan needs %.1f GiB for the %d ranks of this host, above 90%% of its memory "
                        + "(%.1f GiB); start fewer ranks per host, or ",
                    plan.hostBytes / 1_073_741_824, host.ranks, machine / 1_073_741_824) + advice)
        }
    }

    /// The run's description: layout, batch arithmetic, roles, starting point.
    func describe() {
        let dataRanks = colocated ? transport.size : 1, p = cfg.ppo
        say(
            """
            derived: \(cfg.layout) layout, estimator \(p.estimator.rawValue); \(p.prompts) prompts × \(p.samples) \
            samples = \
            \(p.prompts * p.samples) responses per iteration over \(dataRanks) rank(s) (\(myPrompts * p.samples) \
            each), \
            \(p.epochs) epoch(s) of minibatches of \(p.minibatchSize) → \
            \(p.epochs * Int((Double(p.prompts * p.samples) / Double(p.minibatchSize)).rounded(.up))) optimizer steps \
            per iteration, micro-batches of \(microBatchSize) per rank\(rolloutLine)
            roles: \(colocated && transport.size > 1 ? "every role on every rank (colocated, data " +
                "parallel)" : placement.description)\(onePass ? "; reference + reward from one adapters-off pass" : "")
            starting from \(cfg.run.initFrom); \(BLAS.summary)
            \(cfg.run.precisionLine)
            """)
    }

    /// Pre-PPO's prompt pool, the reward sources (the hybrid reward's best-of-N references need
    /// the prompts: with Pre-PPO, every candidate's, so that the selection scores with the whole
    /// reward) and the curriculum.
    func preparePrompts(folder: RunFolder?) async throws {
        let prompts = data.prompts
        let candidates = cfg.promptSelection.keep > 0 ? prePPOCandidates() : Array(prompts.indices)
        // Held-out prompts a source may score (LASeR's held-out gain): the evaluation prompts.
        let heldOut = Array(data.evalExamples.prefix(cfg.laser.heldoutPrompts)).map {
            SFTTokenization.promptTokens($0, tokenizer: tokenizer)
        }
        sources = try await RewardSources.make(
            RewardSourceContext(
                config: cfg.rewardConfig, learned: rewardModels, prompts: prompts, pool: candidates,
                heldOutPrompts: heldOut, policy: policy,
                localPolicy: roles.policy, scorer: scorer, tokenizer: tokenizer, say: say, host: sourceHost))
        pool = candidates
        if cfg.promptSelection.keep > 0 {
            pool =
                cfg.promptSelection.rule == .random
                ? randomPromptSubset(candidates) : try await prePPOSelection(candidates: candidates, folder: folder)
        }
        guard !pool.isEmpty else {
            throw ConfigError(
                "'prepo.keep' (\(cfg.promptSelection.keep)) of \(cfg.promptSelection.candidates) candidates keeps no "
                    + "prompt; raise it"
            )
        }
        let priorityTasks = cfg.promptSelection.curriculumTasks
        priority = pool.filter { priorityTasks.contains(prompts[$0].task) }
        curriculumIterations = Int((cfg.promptSelection.curriculumShare * Double(cfg.ppo.iterations)).rounded())
        if !priorityTasks.isEmpty && priority.isEmpty {
            throw ConfigError(
                "'curriculum.tasks': no prompt has task \(priorityTasks.sorted().joined(separator: ", "))")
        }
        if curriculumIterations > 0 && !priority.isEmpty {
            say(
                "curriculum: iterations 1…\(curriculumIterations) draw from the \(priority.count) prompts of "
                    + "\(priorityTasks.sorted().joined(separator: ", ")), then all \(pool.count)"
            )
        }
    }

    /// Copies the trained state of a policy or critic placed on another rank into this rank's
    /// local copies (which evaluation and the final adapters read).
    func pullPlacedState() async throws {
        if placement.remote[.policy] != nil { try await roles.policy.restore(try await policy.snapshots()) }
        if placement.remote[.critic] != nil { try await roles.critic.restore(try await critic.snapshots()) }
    }

    /// Trainable state for a checkpoint: policy, critic and the reward sources'.
    func snapshots() async throws -> [String: TrainableSnapshot] {
        var snapshots = try await policy.snapshots()
        snapshots.merge(try await critic.snapshots()) { a, _ in a }
        for source in sources { snapshots.merge(source.snapshots()) { a, _ in a } }
        return snapshots
    }

    /// Continues from `checkpoint` (its training `state` already read and checked): the trainable
    /// parts of every role and reward source, the KL coefficient and the PPO-ptx cursor.
    func restore(_ state: TrainingState, from checkpoint: String) async throws {
        let file = try SafeTensorsFile(path: (checkpoint as NSString).appendingPathComponent(PPOCheckpoint.fileName))
        let snapshots = try PPOCheckpoint.read(file, steps: state.optimizerSteps ?? [:])
        // Each role gets its own parts only (a placed role receives them over the wire).
        try await policy.restore(snapshots.filter { $0.key == "policy" })
        try await critic.restore(
            snapshots.filter { ["value_head", "critic_adapter", "critic_trunk"].contains($0.key) })
        for source in sources { try source.restore(directory: checkpoint, snapshots: snapshots) }
        kl.beta = state.klBeta ?? kl.beta
        // The PPO-ptx demonstrations the iterations before the checkpoint consumed.
        if cfg.ppo.ptxCoef > 0 { ptxCursor += state.step * cfg.ppo.epochs * myPrompts * cfg.ppo.samples }
    }

    /// The reward sources' own files in a checkpoint folder.
    func writeSourceState(directory: String) throws {
        for source in sources { try source.writeState(directory: directory) }
    }
}

/// `rlhf bench ppo`: the stage's own iterations on a given model and prompts, timed.
public enum PPOTiming {
    public struct Best: Sendable {
        public var iteration = Double.infinity, generate = 0.0, score = 0.0, train = 0.0, trainableParameters = 0
    }

    /// The fastest of `iterations` iterations after one warm-up, with its phase split (0: the
    /// warm-up alone, for a peak-memory run at a size where one iteration takes minutes). Over a
    /// world of several ranks every rank runs its share of the prompts (`ppo.prompts` / ranks).
    public static func best(
        config: PPOConfig, inputs: PPOInputs, iterations: Int, transport: any Transport = SingleProcessTransport()
    ) async throws -> Best {
        guard
            let session = try await PPOSession.start(
                config: config, transport: transport, say: { _ in }, inputs: inputs)
        else { return Best() }
        try await session.preparePrompts(folder: nil)
        var best = Best()
        for iteration in 1...(iterations + 1) {
            let started = Date()
            let m = try await session.iteration(iteration)
            let seconds = Date().timeIntervalSince(started)
            if (iteration > 1 || iterations == 0) && seconds < best.iteration {
                (best.iteration, best.generate, best.score, best.train) = (
                    seconds, m.generateSeconds, m.scoreSeconds, m.trainSeconds
                )
            }
        }
        let r = session.roles
        best.trainableParameters =
            config.layout == .hydra
            ? r.policyLoRA!.weights.count + r.criticLoRA!.weights.count + r.valueHead.parameters.count
            : 2 * r.base.parameterCount + r.valueHead.parameters.count
        return best
    }
}
