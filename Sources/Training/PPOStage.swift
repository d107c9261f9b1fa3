import Alignment
import Cluster
import Foundation
import Kernels
import Models
import Roles
import Tokenizers

public struct PPOResult: Sendable {
    public var runFolder: String
    public var initialExactMatch: Double?
    public var finalExactMatch: Double?
    public var kl: Double
    public var seconds: Double
}

/// Online RL with PPO (algorithms.md §2) or a critic-free estimator (§10) in the Hydra layout
/// (§1: one frozen trunk; policy and critic LoRA; reference and reward from one adapters-off
/// pass) or the separate layout (four full models). Colocated: every rank rolls out its share
/// of the prompts and the trainable roles all-reduce gradients. Placed: rank 0 drives and the
/// named roles answer from their ranks.
public final class PPOStage {
    let config: PPOConfig
    let transport: any Transport
    let workingDirectory: String
    let sayOnRankZero: (String) -> Void
    public private(set) var context: FailureContext

    public init(config: PPOConfig, transport: any Transport, workingDirectory: String = FileManager.default.currentDirectoryPath,
                say: @escaping (String) -> Void = { print($0); fflush(nil) }) {
        self.config = config; self.transport = transport; self.workingDirectory = workingDirectory; self.sayOnRankZero = say
        context = FailureContext(rank: transport.rank, role: "ppo", step: 0)
    }
    func say(_ m: String) { if transport.rank == 0 { sayOnRankZero(m) } }

    struct Prompt { let tokens: [Int32]; let answer: String?; var task = ""; var text = "" }

    public func run() async throws -> PPOResult {
        let cfg = config, c = config.c, started = Date()
        FailureReport.current = context
        let tokenizer = try Tokenizers.load(cfg.initFrom)
        let base = try HFCheckpoint.load(directory: cfg.initFrom)
        let headPath = (cfg.initFrom as NSString).appendingPathComponent(ScalarHeadIO.fileName)
        let rewardHead: ScalarHead
        if FileManager.default.fileExists(atPath: headPath) { rewardHead = try ScalarHeadIO.load(directory: cfg.initFrom, channels: base.config.channels) }
        else {
            guard c.double("rewards.reward_head") == 0 else { throw ConfigError("rewards.reward_head > 0 needs \(headPath) (train with hydra-sft)") }
            rewardHead = ScalarHead(channels: base.config.channels)
        }
        let placement = try Placement.parse(cfg.placement, worldSize: transport.size)
        // The memory plan, before anything big is allocated; refuse to start above the limit.
        let ranksRollingOut = placement.remote.isEmpty ? transport.size : 1
        let plan = try MemoryPlan(config: base.config, hydra: cfg.layout == "hydra",
                                  lora: LoRAConfig(rank: c.int("lora.rank"), alpha: c.float("lora.alpha"), targets: try cfg.loraTargets()),
                                  responses: cfg.prompts / max(ranksRollingOut, 1) * cfg.samples, minibatch: c.int("ppo.minibatch_size"),
                                  maxLength: c.int("train.max_length"))
        say(plan.description)
        let limit = c.double("memory.limit_gib") > 0 ? c.double("memory.limit_gib") * 1_073_741_824 : MemoryPlan.defaultLimitBytes
        if let limit, plan.totalBytes > limit {
            throw ConfigError(String(format: "the memory plan needs %.1f GiB per process, above the limit of %.1f GiB (memory.limit_gib); use layout: hydra, smaller ppo.minibatch_size or fewer ppo.prompts × samples", plan.totalBytes / 1_073_741_824, limit / 1_073_741_824))
        }
        let colocated = placement.remote.isEmpty
        let hydra = cfg.layout == "hydra"
        var rng = RNG(seed: cfg.seed)

        // Roles. Hydra: every role over `base`; separate: a full copy per role.
        func copy(_ t: GPT2Trunk) throws -> GPT2Trunk { try GPT2Trunk(config: t.config, weights: t.weights.clone()) }
        let loraConfig = LoRAConfig(rank: c.int("lora.rank"), alpha: c.float("lora.alpha"), targets: try cfg.loraTargets())
        let replicas: (any Transport)? = colocated && transport.size > 1 ? transport : nil
        let policyHyper = AdamWHyperparameters(learningRate: c.float("ppo.lr"), weightDecay: 0)
        let criticHyper = AdamWHyperparameters(learningRate: c.float("ppo.critic_lr"), weightDecay: 0)
        let valueHead = ScalarHead(channels: base.config.channels)
        valueHead.parameters.copy(from: rewardHead.parameters)   // critic starts as the reward model (Hydra §1.3)
        let policyTrunk = hydra ? base : try copy(base)
        let policyLoRA = hydra ? try LoRAAdapter(config: loraConfig, modelConfig: base.config) : nil
        let criticLoRA = hydra ? try LoRAAdapter(config: loraConfig, modelConfig: base.config) : nil
        policyLoRA?.initialize(rng: &rng)
        criticLoRA?.initialize(rng: &rng)
        let policy = LocalPolicy(trunk: policyTrunk, adapter: policyLoRA, hyper: policyHyper, replicas: replicas)
        let critic = LocalCritic(trunk: hydra ? base : try copy(base), adapter: criticLoRA, head: valueHead, hyper: criticHyper,
                                 replicas: replicas, trainTrunk: !hydra)
        let scorer = HydraScorer(trunk: base, rewardHead: rewardHead)
        let separateReward = hydra ? nil : LocalReward(trunk: try copy(base), head: rewardHead)

        // A rank that only hosts placed roles serves them and is done.
        if !colocated && transport.rank != 0 {
            if let hosted = placement.servers[transport.rank] {
                try await RoleServer(transport: transport, reference: hosted.contains(.reference) ? scorer : nil,
                                     reward: hosted.contains(.reward) ? (separateReward.map { $0 as any RewardRole } ?? scorer) : nil).serve()
            }
            try await transport.barrier()
            return PPOResult(runFolder: "", initialExactMatch: nil, finalExactMatch: nil, kl: 0, seconds: Date().timeIntervalSince(started))
        }
        let clients = Dictionary(uniqueKeysWithValues: placement.servers.keys.map { ($0, RoleClient(transport: transport, host: $0)) })
        let reference: any ReferenceRole = placement.remote[.reference].map { RemoteReference(clients[$0]!) } ?? scorer
        let reward: any RewardRole = placement.remote[.reward].map { RemoteReward(clients[$0]!) } ?? (separateReward.map { $0 as any RewardRole } ?? scorer)
        let onePass = hydra && placement.remote[.reference] == nil && placement.remote[.reward] == nil
        let learned = try LearnedRewards.make(c, base: base, originalHead: rewardHead, seed: cfg.seed)
        guard learned == nil || (onePass && colocated) else { throw ConfigError("rewards.proxy_heads needs layout hydra with every role colocated") }

        // Prompts with answers, and the held-out evaluation set.
        let prompts: [Prompt], evalExamples: [SFTExample]
        let arith = cfg.task == "arith" ? ArithTask(c) : nil
        if let task = arith {
            prompts = task.train.map { Prompt(tokens: SFTTokenization.promptTokens(SFTExample(prompt: ArithTask.prompt($0), completion: ""), tokenizer: tokenizer), answer: ArithTask.answer($0), task: "arith", text: ArithTask.prompt($0)) }
            evalExamples = Array(task.evalExamples().prefix(c.int("eval.max_examples")))
        } else {
            prompts = try JSONL.prompts(path: cfg.promptsFile).map { Prompt(tokens: SFTTokenization.promptTokens(SFTExample(prompt: $0.prompt, completion: ""), tokenizer: tokenizer), answer: $0.answer, task: $0.task ?? "", text: $0.prompt) }
            evalExamples = cfg.evalFile.isEmpty ? [] : Array(try JSONL.sft(path: cfg.evalFile).prefix(c.int("eval.max_examples")))
        }
        // PPO-ptx (InstructGPT): SFT demonstrations for an extra policy step per minibatch.
        var ptxDemos: [TokenizedExample] = []
        if c.double("ppo.ptx_coef") > 0 {
            let demos: [SFTExample]
            if let arith {
                demos = arith.sftExamples()
            } else {
                guard !c.string("data.ptx").isEmpty else { throw ConfigError("ppo.ptx_coef > 0 needs 'data.ptx' (SFT demonstrations JSONL)") }
                demos = try JSONL.sft(path: c.string("data.ptx"))
            }
            ptxDemos = try demos.map { try SFTTokenization.tokenize($0, tokenizer: tokenizer, maxLength: c.int("train.max_length")) }
        }
        // Pairs R2M replays in its online updates: [BOS] x y [EOS] with the prompt's length.
        var r2mPairs: [(chosen: [Int32], rejected: [Int32], promptLength: Int)] = []
        if learned?.r2m != nil {
            let examples: [PreferenceExample]
            if !c.string("data.r2m_pairs").isEmpty { examples = try JSONL.preferences(path: c.string("data.r2m_pairs")).flatMap(\.pairs) }
            else if let arith {
                examples = arith.preferenceExamples(eval: false)
            } else { throw ConfigError("rewards.selection r2m needs 'data.r2m_pairs' (preference pairs to replay)") }
            r2mPairs = try examples.map {
                let p = try TokenizedPair($0, tokenizer: tokenizer, maxLength: c.int("train.max_length"), conditioned: false)
                return (p.prompt + p.chosen, p.prompt + p.rejected, p.prompt.count)
            }
        }
        var ptxCursor = transport.rank * 7919
        let dataRanks = colocated ? transport.size : 1
        guard cfg.prompts % dataRanks == 0 else { throw ConfigError("'ppo.prompts' (\(cfg.prompts)) must be a multiple of the ranks rolling out (\(dataRanks))") }
        let myPrompts = cfg.prompts / dataRanks

        // Run folder and checkpoint to resume from (rank 0 decides). Placed: the other ranks are
        // serving roles, so rank 0 alone decides (no collective).
        let (folder, checkpoint, resumeMessage) = colocated
            ? try await RunFolder.chooseCollectively(name: cfg.name, out: cfg.out, resume: cfg.resume, workingDirectory: workingDirectory, transport: transport)
            : try RunFolder.choose(name: cfg.name, out: cfg.out, resume: cfg.resume, workingDirectory: workingDirectory)
        if transport.rank == 0 { try folder.writeConfig(c.yaml) }
        say("ppo: run folder \(folder.path)")
        say("resolved config (\(c.file ?? "defaults")):\n" + c.yaml)
        say("""
            derived: \(cfg.layout) layout, estimator \(cfg.estimator.rawValue); \(cfg.prompts) prompts × \(cfg.samples) samples = \
            \(cfg.prompts * cfg.samples) responses per iteration over \(dataRanks) rank(s) (\(myPrompts * cfg.samples) each), \
            \(c.int("ppo.epochs")) epoch(s) of minibatches of \(c.int("ppo.minibatch_size")) → \
            \(c.int("ppo.epochs") * Int((Double(myPrompts * cfg.samples) / Double(c.int("ppo.minibatch_size"))).rounded(.up))) optimizer steps per iteration
            roles: \(colocated && transport.size > 1 ? "every role on every rank (colocated, data parallel)" : placement.description)\(onePass ? "; reference + reward from one adapters-off pass" : "")
            starting from \(cfg.initFrom); \(BLAS.summary)
            """)

        var kl = AdaptiveKLController(beta: c.double("ppo.kl_coef"), target: c.double("ppo.kl_target") > 0 ? c.double("ppo.kl_target") : nil,
                                      horizon: c.double("ppo.kl_horizon"))
        var result = PPOResult(runFolder: folder.path, initialExactMatch: nil, finalExactMatch: nil, kl: 0, seconds: 0)
        func evaluate(_ iteration: Int) throws -> Double? {
            guard transport.rank == 0, !evalExamples.isEmpty else { return nil }
            let r = try Evaluation.run(trunk: policyTrunk, adapter: policyLoRA, examples: evalExamples, tokenizer: tokenizer,
                                       maxLength: c.int("train.max_length"), maxNewTokens: c.int("eval.max_new_tokens"), batchSize: 64)
            try folder.appendMetrics(["step": iteration, "eval_loss": r.loss, "exact_match": r.exactMatch ?? 0])
            say(String(format: "iteration %d: held-out exact match %.1f%%, eval loss %.4f", iteration, 100 * (r.exactMatch ?? 0), r.loss))
            return r.exactMatch
        }
        /// The reward of each response: the weighted named sources (design §5).
        func composeRewards(texts: [String], answers: [String?], headScores: [Double], proxy: [Double]?, hybrid: [Double]? = nil) -> RewardBreakdown {
            var rewards = RewardBreakdown(count: texts.count)
            rewards.add("reward_head", values: headScores, weight: c.double("rewards.reward_head"))
            rewards.add("verifier", values: zip(texts, answers).map { ExactAnswerVerifier().score(response: $0, answer: $1) }, weight: c.double("rewards.verifier"))
            rewards.add("format", values: texts.map { IntegerFormatVerifier().score(response: $0, answer: nil) }, weight: c.double("rewards.format"))
            if let proxy { rewards.add("proxy", values: proxy, weight: c.double("rewards.proxy")) }
            if let hybrid { rewards.add("hybrid", values: hybrid, weight: c.double("rewards.hybrid")) }
            return rewards
        }
        /// Less the missing-EOS penalty, clipped to ±ppo.reward_clip.
        func finalScores(_ rewards: RewardBreakdown, endedWithEOS: [Bool]) -> [Double] {
            let clipR = c.double("ppo.reward_clip"), eosPenalty = c.double("ppo.missing_eos_penalty")
            return rewards.total.enumerated().map { i, r in min(max(r - (endedWithEOS[i] ? 0 : eosPenalty), -clipR), clipR) }
        }

        // Pre-PPO (§8.3): the prompts PPO draws from, and the task-priority schedule (§8.4).
        var pool = Array(prompts.indices)
        if c.double("prepo.keep") > 0 {
            pool = try await prePPOSelection(prompts: prompts, policy: policy, folder: folder, replicas: replicas) { sequences, promptLengths, texts, answers, eos in
                let (_, last) = try await scorer.referenceAndLastHidden(sequences)
                let head = rewardHead.forward(hidden: last.flatMap { $0 }, rows: last.count).map(Double.init)
                // Learned proxies as their ensemble (no bandit step, no R2M fusion: the SFT policy is scored).
                let proxy = try learned.map { l in let s = l.headScores(try l.proxyStates(sequences, shared: last)); return s[0].indices.map { i in s.reduce(0) { $0 + $1[i] } / Double(s.count) } }
                return finalScores(composeRewards(texts: texts, answers: answers, headScores: head, proxy: proxy), endedWithEOS: eos)
            }
        }
        // The hybrid reward's routes, with best-of-N references computed once for the prompts that need them.
        var hybrid: HybridReward?
        if c.double("rewards.hybrid") != 0 {
            func tasks(_ key: String) -> Set<String> { Set(c.string(key).split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }) }
            let verifiers: [String: [any Verifier]]
            do { verifiers = try Verifiers.routes(c.string("rewards.verifier_tasks")) } catch { throw ConfigError("'rewards.verifier_tasks': \(error)") }
            hybrid = HybridReward(verifiers: verifiers, referenceTasks: tasks("rewards.reference_tasks"),
                                  genrm: c.string("rewards.genrm_model").isEmpty ? nil : try GenerativeReward(directory: c.string("rewards.genrm_model")))
            let needBoN = pool.filter { hybrid!.route(task: prompts[$0].task, hasAnswer: prompts[$0].answer != nil) == .genrmBestOfN }
            hybrid!.bestOfN = try await bestOfNReferences(needBoN, prompts: prompts, policy: policy, scorer: scorer, learned: learned)
            let routes = Dictionary(grouping: pool) { hybrid!.route(task: prompts[$0].task, hasAnswer: prompts[$0].answer != nil).rawValue }.mapValues(\.count)
            say("hybrid reward: prompts per route \(routes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
        }
        // LASeR's held-out prompts (the evaluation prompts), scored once before the first update.
        let heldOutPrompts = Array(evalExamples.prefix(c.int("laser.heldout_prompts"))).map { SFTTokenization.promptTokens($0, tokenizer: tokenizer) }
        if let learned, learned.bandit != nil, c.string("laser.reward") == "heldout" {
            guard !heldOutPrompts.isEmpty else { throw ConfigError("laser.reward heldout needs held-out prompts (data.eval, or a task)") }
            if learned.previousEnsembleMean == nil {
                learned.previousEnsembleMean = try await learned.heldOutScore(heldOutPrompts, policy: policy, scorer: scorer, maxNewTokens: cfg.maxNewTokens, eosTokenId: tokenizer.eosTokenId)
            }
        }
        let priorityTasks = Set(c.string("curriculum.tasks").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        let priority = pool.filter { priorityTasks.contains(prompts[$0].task) }
        let curriculumIterations = Int((c.double("curriculum.share") * Double(cfg.iterations)).rounded())
        if !priorityTasks.isEmpty && priority.isEmpty { throw ConfigError("'curriculum.tasks': no prompt has task \(priorityTasks.sorted().joined(separator: ", "))") }
        if curriculumIterations > 0 && !priority.isEmpty { say("curriculum: iterations 1…\(curriculumIterations) draw from the \(priority.count) prompts of \(priorityTasks.sorted().joined(separator: ", ")), then all \(pool.count)") }

        var startIteration = 1
        if let checkpoint {
            let state = try Checkpoints.loadState(checkpoint)
            guard state.stage == "ppo" else { throw TrainingError("\(checkpoint) is a '\(state.stage)' checkpoint, not ppo") }
            let file = try SafeTensorsFile(path: (checkpoint as NSString).appendingPathComponent(PPOCheckpoint.fileName))
            let snapshots = try PPOCheckpoint.read(file, steps: state.optimizerSteps ?? [:])
            try await policy.restore(snapshots)
            try await critic.restore(snapshots)
            try learned?.restore(directory: checkpoint, snapshots: snapshots)
            kl.beta = state.klBeta ?? kl.beta
            startIteration = state.step + 1
            if transport.rank == 0 { try folder.truncateMetrics(afterStep: state.step) }
        }
        say(resumeMessage + (checkpoint != nil ? " at iteration \(startIteration - 1)" : ""))
        func save(iteration: Int) async throws {
            var snapshots = await policy.snapshots()
            snapshots.merge(await critic.snapshots()) { a, _ in a }
            snapshots.merge(learned?.snapshots() ?? [:]) { a, _ in a }
            let state = TrainingState(stage: "ppo", step: iteration, cursor: iteration * cfg.prompts, optimizerStep: snapshots["policy"]!.step,
                                      learningRate: 0, rng: RNG(seed: cfg.seed), tokenizer: tokenizer is BPETokenizer ? "tokenizer.json" : "byte",
                                      worldSize: transport.size, klBeta: kl.beta, optimizerSteps: snapshots.mapValues(\.step))
            _ = try Checkpoints.saveFolder(directory: folder.checkpoints, step: iteration, keepLast: c.int("checkpoint.keep_last")) { dir in
                try Checkpoints.writeCommon(dir, optimizer: nil, state: state, tokenizerFile: (tokenizer as? BPETokenizer)?.path)
                try PPOCheckpoint.write(snapshots, path: (dir as NSString).appendingPathComponent(PPOCheckpoint.fileName))
                try learned?.writeState(directory: dir)
            }
        }
        if checkpoint == nil { result.initialExactMatch = try evaluate(0) }
        if colocated { try await transport.barrier() }
        // PPO-ptx demonstrations consumed before the first iteration run here.
        if c.double("ppo.ptx_coef") > 0 { ptxCursor += (startIteration - 1) * c.int("ppo.epochs") * myPrompts * cfg.samples }

        let estimator = cfg.estimator
        var order: [Int] = []
        var orderKey: (pool: Int, epoch: Int)?
        let progress = Progress(total: cfg.iterations, every: c.int("log.every"), startStep: startIteration - 1)
        for iteration in startIteration...max(cfg.iterations, startIteration) where iteration <= cfg.iterations {
            context.step = iteration
            FailureReport.current = context
            let commStart = CommunicationClock.seconds
            // 1. Rollout: this rank's prompts, each sampled `samples` times.
            let tGenerate = Date()
            let globalStart = (iteration - 1) * cfg.prompts
            var batchPrompts: [Prompt] = [], batchIndices: [Int] = []
            let active = iteration <= curriculumIterations && !priority.isEmpty ? priority : pool
            for k in 0..<cfg.prompts {
                let position = globalStart + k, epoch = position / active.count
                if orderKey?.epoch != epoch || orderKey?.pool != active.count {
                    var orderRNG = RNG(seed: cfg.seed &+ 0xA11 &+ UInt64(epoch) &+ (active.count == prompts.count ? 0 : UInt64(active.count) &* 0x1F))
                    order = active
                    shuffle(&order, &orderRNG)
                    orderKey = (active.count, epoch)
                }
                batchPrompts.append(prompts[order[position % active.count]])
                batchIndices.append(order[position % active.count])
            }
            let rankOffset = colocated ? transport.rank * myPrompts : 0
            let mine = Array(batchPrompts[rankOffset..<(rankOffset + myPrompts)])
            let repeated = mine.flatMap { p in Array(repeating: p, count: cfg.samples) }
            let repeatedIndices = batchIndices[rankOffset..<(rankOffset + myPrompts)].flatMap { Array(repeating: $0, count: cfg.samples) }
            let options = SamplingOptions(temperature: c.float("ppo.temperature"), topK: c.int("ppo.top_k"), topP: c.float("ppo.top_p"),
                                          maxNewTokens: cfg.maxNewTokens, eosTokenId: tokenizer.eosTokenId,
                                          seed: cfg.seed &+ UInt64(iteration) &* 7919 &+ UInt64(transport.rank))
            let rollout = try await policy.generate(prompts: repeated.map(\.tokens), options: options)
            let sequences = zip(repeated, rollout.tokens).map { $0.tokens + $1 }
            let promptLengths = repeated.map(\.tokens.count)
            let generateSeconds = Date().timeIntervalSince(tGenerate)

            // 2. Score: reference log-probs and reward-head scores, old policy log-probs, values.
            let tScore = Date()
            let (refAll, headScores, oldAll): ([[Float]], [Float], [[Float]])
            var scored: LearnedRewards.Scored?
            if let learned {
                scored = try await learned.score(sequences, promptLengths: promptLengths, iteration: iteration, scorer: scorer, policy: policy,
                                                 originalHead: rewardHead, replicas: replicas)
                (refAll, headScores, oldAll) = (scored!.reference, scored!.original, scored!.old)
            } else {
                if onePass { (refAll, headScores) = try await scorer.referenceAndScores(sequences) }
                else { refAll = try await reference.logProbs(sequences); headScores = try await reward.scores(sequences) }
                oldAll = try await policy.logProbs(sequences)
            }
            let valuesAll = estimator.needsCritic ? try await critic.values(sequences) : []
            func response<T>(_ rows: [[T]], shift: Int = 1) -> [[T]] {
                rows.enumerated().map { i, r in Array(r[(promptLengths[i] - shift)..<(sequences[i].count - shift)]) }
            }
            let refLogp = response(refAll), oldLogp = response(oldAll)
            let oldValues = estimator.needsCritic ? response(valuesAll) : []
            let texts = rollout.tokens.map { tokenizer.decode($0, skipSpecialTokens: true) }
            let routed = try hybrid?.scores(prompts: repeatedIndices, questions: repeated.map(\.text), tasks: repeated.map(\.task),
                                            answers: repeated.map(\.answer), texts: texts)
            var rewards = composeRewards(texts: texts, answers: repeated.map(\.answer), headScores: headScores.map(Double.init), proxy: scored?.proxy, hybrid: routed?.values)
            // LASeR over named sources: this batch's reward is the chosen source alone.
            if let learned, learned.explicitArms, let arm = scored?.arm {
                let name = learned.armNames[arm]
                rewards.total = name.hasPrefix("proxy") ? scored!.perHead[Int(name.dropFirst(5))! - 1] : rewards.bySource[name]!
            }
            // The gold reward of the over-optimisation study: exact answer + format rule, logged whatever the weights.
            let gold = zip(rewards.bySource["verifier"]!, rewards.bySource["format"]!).map { $0 + $1 }
            let scores = finalScores(rewards, endedWithEOS: rollout.endedWithEOS)
            let klTokens = (0..<sequences.count).map { PPOMath.kl(oldLogp[$0].map(Double.init), refLogp[$0].map(Double.init), estimator: cfg.klEstimator) }
            let beta = kl.beta

            // 3. Advantages.
            var advantages: [[Double]] = [], returns: [[Double]] = []
            let groups = (0..<myPrompts).map { p in Array((p * cfg.samples)..<((p + 1) * cfg.samples)) }
            switch estimator {
            case .gae:
                for i in sequences.indices {
                    let shaped = PPOMath.shapedRewards(kl: klTokens[i], beta: beta, score: scores[i])
                    let (a, g) = PPOMath.gae(rewards: shaped, values: oldValues[i].map(Double.init), gamma: c.double("ppo.gamma"), lambda: c.double("ppo.lambda"))
                    advantages.append(a); returns.append(g)
                }
                if c.bool("ppo.whiten_advantages") { advantages = try await whiten(advantages, unbiased: true, replicas: replicas) }
            case .grpo, .drGRPO, .rloo:
                // KL as a sequence-level penalty on the reward (TRL RLOO), then the group baseline.
                let penalised = scores.enumerated().map { $1 - beta * klTokens[$0].reduce(0, +) }
                let perSample = GroupAdvantages.compute(estimator, rewards: penalised, groups: groups)
                advantages = sequences.indices.map { Array(repeating: perSample[$0], count: klTokens[$0].count) }
            case .reinforce, .reinforceBaseline:
                let base = estimator == .reinforceBaseline ? GroupAdvantages.compute(.reinforceBaseline, rewards: scores, groups: groups) : scores
                advantages = sequences.indices.map { PPOMath.returns(rewards: PPOMath.shapedRewards(kl: klTokens[$0], beta: beta, score: base[$0]), gamma: c.double("ppo.gamma")) }
                if c.bool("ppo.whiten_advantages") { advantages = try await whiten(advantages, unbiased: false, replicas: replicas) }
            }
            let scoreSeconds = Date().timeIntervalSince(tScore)

            // 4. Update: epochs × minibatches, at this iteration's rates (cosine decay, no warm-up).
            let tTrain = Date()
            let decay = LearningRateSchedule(peak: 1, minRatio: c.float("ppo.min_lr_ratio"), warmupSteps: 0, totalSteps: cfg.iterations).rate(step: iteration)
            let policyLR = c.float("ppo.lr") * decay, criticLR = c.float("ppo.critic_lr") * decay
            var stats: [StepStats] = [], valueLosses: [Float] = []
            let minibatch = c.int("ppo.minibatch_size")
            var shuffleRNG = RNG(seed: cfg.seed &+ UInt64(iteration) &* 31)
            for _ in 0..<c.int("ppo.epochs") {
                var indices = Array(sequences.indices)
                shuffle(&indices, &shuffleRNG)
                for start in stride(from: 0, to: indices.count, by: minibatch) {
                    let part = Array(indices[start..<min(start + minibatch, indices.count)])
                    let targets = PPOTargets(promptLengths: part.map { promptLengths[$0] }, oldLogProbs: part.map { oldLogp[$0] },
                                             advantages: part.map { advantages[$0].map(Float.init) }, clipLow: c.float("ppo.clip"), clipHigh: c.float("ppo.clip"),
                                             dualClip: c.float("ppo.dual_clip"), entropyCoefficient: c.float("ppo.entropy_coef"))
                    stats.append(try await policy.trainStep(part.map { sequences[$0] }, objective: .ppo(targets), learningRate: policyLR, maxGradNorm: c.float("ppo.grad_clip")))
                    if !ptxDemos.isEmpty {
                        // −γ_ptx · mean log-likelihood of demonstration completions (loss on completion tokens only).
                        let demos = (0..<part.count).map { k in ptxDemos[(ptxCursor + k) % ptxDemos.count] }
                        ptxCursor += part.count
                        let tokens = demos.reduce(0) { $0 + $1.lossTokens }
                        let coef = Float(c.double("ppo.ptx_coef")) / Float(max(tokens, 1))
                        _ = try await policy.trainStep(demos.map { $0.tokens + [$0.targets.last!] },
                                                       objective: .weightedLogLikelihood(weights: demos.map { $0.targets.map { $0 >= 0 ? coef : 0 } }),
                                                       learningRate: policyLR, maxGradNorm: c.float("ppo.grad_clip"))
                    }
                    if estimator.needsCritic {
                        let v = try await critic.trainStep(part.map { sequences[$0] }, objective: .clippedValue(
                            promptLengths: part.map { promptLengths[$0] }, oldValues: part.map { oldValues[$0] },
                            returns: part.map { returns[$0].map(Float.init) }, clip: c.float("ppo.value_clip")),
                            learningRate: criticLR, maxGradNorm: c.float("ppo.grad_clip"))
                        valueLosses.append(v.loss)
                    }
                }
            }
            let trainSeconds = Date().timeIntervalSince(tTrain)

            // 5. KL controller and metrics (means over every rank's samples).
            let seqKL = klTokens.map { $0.reduce(0, +) }
            let lengths = rollout.tokens.map { Double($0.count) }
            var sums: [Double] = [Double(sequences.count), seqKL.reduce(0, +), lengths.reduce(0, +),
                                  Double(rollout.endedWithEOS.filter { !$0 }.count), scores.reduce(0, +), scores.map { $0 * $0 }.reduce(0, +)]
            let sourceNames = ["reward_head", "verifier", "format"]
            for name in sourceNames { let v = rewards.bySource[name] ?? []; sums += [v.reduce(0, +), v.map { $0 * $0 }.reduce(0, +)] }
            let proxyValues = scored?.proxy ?? [], ensemble = scored.map { learned!.ensemble($0.perHead, count: sequences.count) } ?? []
            sums += [gold.reduce(0, +), gold.map { $0 * $0 }.reduce(0, +), proxyValues.reduce(0, +), ensemble.reduce(0, +)]
            sums += HybridReward.Route.allCases.map { r in Double(routed?.routes.filter { $0 == r }.count ?? 0) }
            sums += [routed?.values.reduce(0, +) ?? 0]
            if let replicas { sums = try await replicas.allReduce(sums, op: .sum) }
            let n = sums[0], meanKL = sums[1] / n
            kl.update(observedKL: meanKL, steps: Int(n))
            var learnedMetrics: [String: Any] = [:]
            if let learned, let scored {
                let policyLoss = try await (replicas?.allReduce([Double(stats.map(\.loss).reduce(0, +)) / Double(max(stats.count, 1))], op: .mean)[0])
                    ?? Double(stats.map(\.loss).reduce(0, +)) / Double(max(stats.count, 1))
                let heldOut = learned.bandit != nil && c.string("laser.reward") == "heldout"
                    ? try await learned.heldOutScore(heldOutPrompts, policy: policy, scorer: scorer, maxNewTokens: cfg.maxNewTokens, eosTokenId: tokenizer.eosTokenId) : nil
                learned.finishIteration(policyLoss: policyLoss, heldOut: heldOut)
                if let heldOut { learnedMetrics["laser_heldout_score"] = heldOut }
                if learned.r2m != nil && iteration % max(c.int("r2m.every"), 1) == 0 {
                    var replayRNG = RNG(seed: cfg.seed &+ 0x2E9 &+ UInt64(iteration))
                    let replay = (0..<min(c.int("r2m.replay"), r2mPairs.count)).map { _ in r2mPairs[Int(replayRNG.next() % UInt64(r2mPairs.count))] }
                    let (pairLoss, anchorLoss) = try await learned.updateR2M(iteration: iteration, replay: replay, scored: scored, promptLengths: promptLengths,
                                                                             scorer: scorer, policy: policy, anchor: c.double("r2m.anchor"),
                                                                             learningRate: c.float("r2m.lr"), replicas: replicas)
                    learnedMetrics = learnedMetrics.merging(["r2m_pair_loss": pairLoss, "r2m_anchor_loss": anchorLoss, "r2m_weight": learned.r2mWeight(iteration: iteration)]) { a, _ in a }
                }
            }
            result.kl = meanKL
            func meanStd(_ s: Double, _ sq: Double) -> (Double, Double) { let m = s / n; return (m, max(sq / n - m * m, 0).squareRoot()) }
            if transport.rank == 0 {
                var metrics: [String: Any] = [
                    "step": iteration, "kl": meanKL, "kl_coef": beta, "prompt_pool": active.count, "response_length": sums[2] / n, "truncated_rate": sums[3] / n,
                    "reward_mean": meanStd(sums[4], sums[5]).0, "reward_std": meanStd(sums[4], sums[5]).1,
                    "policy_loss": Double(stats.map(\.loss).reduce(0, +)) / Double(max(stats.count, 1)),
                    "clip_fraction": Double(stats.map(\.clipFraction).reduce(0, +)) / Double(max(stats.count, 1)),
                    "entropy": Double(stats.map(\.entropy).reduce(0, +)) / Double(max(stats.count, 1)),
                    "grad_norm": Double(stats.map(\.gradNorm).reduce(0, +)) / Double(max(stats.count, 1)),
                    "lr": Double(policyLR), "generate_s": generateSeconds, "score_s": scoreSeconds, "train_s": trainSeconds,
                    "communicate_s": CommunicationClock.seconds - commStart,
                ]
                if !valueLosses.isEmpty { metrics["value_loss"] = Double(valueLosses.reduce(0, +)) / Double(valueLosses.count) }
                let g = 6 + 2 * sourceNames.count
                (metrics["gold_mean"], metrics["gold_std"]) = meanStd(sums[g], sums[g + 1])
                if learned != nil { metrics["proxy_mean"] = sums[g + 2] / n; metrics["proxy_ensemble_mean"] = sums[g + 3] / n }
                if let arm = scored?.arm { metrics["laser_arm"] = arm }
                if hybrid != nil {
                    for (k, r) in HybridReward.Route.allCases.enumerated() { metrics["route_\(r.rawValue)_share"] = sums[g + 4 + k] / n }
                    metrics["hybrid_mean"] = sums[g + 4 + HybridReward.Route.allCases.count] / n
                }
                metrics.merge(learnedMetrics) { a, _ in a }
                for (k, name) in sourceNames.enumerated() {
                    let (m, s) = meanStd(sums[6 + 2 * k], sums[7 + 2 * k])
                    metrics["reward_\(name)_mean"] = m; metrics["reward_\(name)_std"] = s
                }
                try folder.appendMetrics(metrics)
                progress.update(step: iteration, fields: String(format: "reward %.3f verifier %.3f kl %.4f clip %.3f len %.1f",
                                                                metrics["reward_mean"] as! Double, metrics["reward_verifier_mean"] as! Double, meanKL,
                                                                metrics["clip_fraction"] as! Double, sums[2] / n))
            }
            if iteration % c.int("eval.every") == 0 || iteration == cfg.iterations {
                if let em = try evaluate(iteration) { result.finalExactMatch = em }
                if colocated { try await transport.barrier() }
            }
            let every = c.int("checkpoint.every")
            if transport.rank == 0 && (iteration == cfg.iterations || (every > 0 && iteration % every == 0)) { try await save(iteration: iteration) }
        }
        for client in clients.values { try await client.stop() }
        try await transport.barrier()
        if transport.rank == 0 {
            let final = (folder.path as NSString).appendingPathComponent("final")
            try FileManager.default.createDirectory(atPath: final, withIntermediateDirectories: true)
            // The policy in formats other tools read: a PEFT adapter over the SFT model, or a full model.
            if let policyLoRA { try PEFTAdapter.save(policyLoRA, directory: final + "/policy_adapter", baseModel: cfg.initFrom) }
            else { try HFCheckpoint.save(policyTrunk, directory: final + "/policy") }
            if let criticLoRA { try PEFTAdapter.save(criticLoRA, directory: final + "/critic_adapter", baseModel: cfg.initFrom) }
            try ScalarHeadIO.save(valueHead, directory: final, fileName: "value_head.safetensors")
        }
        result.seconds = Date().timeIntervalSince(started)
        return result
    }

    /// Whitening over the samples of every rank rolling out (biased or unbiased variance).
    func whiten(_ rows: [[Double]], unbiased: Bool, replicas: (any Transport)?) async throws -> [[Double]] {
        let all = rows.flatMap { $0 }
        var s = [Double(all.count), all.reduce(0, +), all.map { $0 * $0 }.reduce(0, +)]
        if let replicas { s = try await replicas.allReduce(s, op: .sum) }
        guard s[0] > 1 else { return rows }
        let mean = s[1] / s[0]
        let variance = max(s[2] - s[0] * mean * mean, 0) / (unbiased ? s[0] - 1 : s[0])
        let scale = 1 / (variance + 1e-8).squareRoot()
        return rows.map { $0.map { ($0 - mean) * scale } }
    }
}

/// PPO's checkpoint tensors: each trainable part's parameters and AdamW moments, named
/// "<part>.parameters", "<part>.m", "<part>.v" (parts: policy, value_head, critic_adapter or
/// critic_trunk); the AdamW steps are in training_state.json.
enum PPOCheckpoint {
    static let fileName = "ppo_state.safetensors"

    static func write(_ snapshots: [String: TrainableSnapshot], path: String) throws {
        try writeFloatTensors(path: path, snapshots.keys.sorted().flatMap { name in
            [(name + ".parameters", snapshots[name]!.parameters), (name + ".m", snapshots[name]!.m), (name + ".v", snapshots[name]!.v)]
        })
    }

    static func read(_ file: SafeTensorsFile, steps: [String: Int]) throws -> [String: TrainableSnapshot] {
        var out: [String: TrainableSnapshot] = [:]
        for (name, step) in steps {
            out[name] = TrainableSnapshot(parameters: try file.floats(name + ".parameters"), m: try file.floats(name + ".m"), v: try file.floats(name + ".v"), step: step)
        }
        return out
    }
}
