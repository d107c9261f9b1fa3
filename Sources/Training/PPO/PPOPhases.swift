import Alignment
import Cluster
import Datasets
import Foundation
import Kernels
import Models
import Rewards
import Roles
import Runs
import Tokenizers

/// One iteration's rollout on this rank: B = prompts × samples responses.
struct Rollout {
    let iteration: Int
    let prompts: [PPOPrompt]  // [B] each prompt repeated `samples` times
    let promptIndices: [Int]  // [B]
    let tokens: [[Int32]]  // [B] response tokens
    let endedWithEOS: [Bool]  // [B]
    let sequences: [[Int32]]  // [B] prompt + response
    let promptLengths: [Int]  // [B]
    let texts: [String]  // [B] decoded responses
    let sampledLogProbs: [[Float]]  // [B][A] log p(token) of the sampling pass
    let promptPool: Int  // prompts the iteration drew from
    let seconds: Double
}

/// The rollout scored: log-probs of the reference and of the policy that sampled it, values,
/// the reward by source and the per-token KL.
struct ScoredRollout {
    let referenceLogProbs: [[Float]]  // [B][A]
    let oldLogProbs: [[Float]]  // [B][A]
    let oldValues: [[Float]]  // [B][A] (estimators with a critic)
    let rewards: RewardBreakdown
    let scores: [Double]  // [B] the sequence reward, EOS penalty and clip applied
    let gold: [Double]  // [B] exact answer + format rule (logged, never optimised)
    let klTokens: [[Double]]  // [B][A]
    let beta: Double  // the KL coefficient used
    /// [B][S−1] the sampling policy's log-probs of every token (what a source learns against); the
    /// prompt's positions are 0 when they come from the sampling pass (`ppo.old_logprobs`).
    let policyLogProbs: [[Float]]
    /// What the reward sources read (the passes' states dropped once scored).
    let batch: RewardBatch
    /// In bf16, on iterations that measure it: how far bf16 sampling is from fp32 scoring.
    var precisionFigures: [String: Double] = [:]
}

/// The scoring passes over a batch: the reference's log-probs and the reward head's score (in
/// Hydra one adapters-off pass), the policy's log-probs, and the states reward sources read.
struct ScoringPasses {
    var reference: [[Float]] = []  // [B][S−1]
    var headScores: [Float] = []  // [B]
    var policy: [[Float]] = []  // [B][S−1]
    var lastHidden: [[Float]] = []  // [B][C] with `.lastHidden`
    var policyHidden: [[Float]] = []  // [B][S·C] with `.policyHidden`
}

/// Per-token advantages and (GAE) returns.
struct Advantages { var advantages: [[Double]], returns: [[Double]] }

/// What the update phase did.
struct UpdateStats {
    var steps: [StepStats] = [], valueLosses: [Float] = []
    var policyLearningRate: Float = 0
    var seconds = 0.0
    func mean(_ value: (StepStats) -> Float) -> Double {
        Double(steps.map(value).reduce(0, +)) / Double(max(steps.count, 1))
    }
}

extension PPOSession {
    /// rollout → score → advantages → update → report (docs/algorithms.md §2): one iteration. The
    /// report's phases are named: the figures summed over the ranks, the KL controller's step,
    /// the reward sources' own updates.
    func iteration(_ iteration: Int) async throws -> PPOMetrics {
        let communicationStart = CommunicationClock.seconds
        let rollout = try await self.rollout(iteration)
        let scoreStart = Date()
        let scored = try await score(rollout)
        let advantages = try await self.advantages(rollout, scored)
        let scoreSeconds = Date().timeIntervalSince(scoreStart)
        let stats = try await update(rollout, scored, advantages)
        let sums = try await summarize(rollout, scored)
        adaptKL(to: sums)
        let sourceUpdates = try await updateRewardSources(rollout, scored)
        return metrics(
            rollout, scored, stats, sums: sums, sourceUpdates: sourceUpdates,
            seconds: (scoreSeconds, CommunicationClock.seconds - communicationStart))
    }

    /// The prompts of `iteration`: the global batch in the pool's seeded order (a new order each
    /// pass), this rank's share of it, each repeated `samples` times.
    func draw(_ iteration: Int) -> (prompts: [PPOPrompt], indices: [Int], pool: Int) {
        let prompts = data.prompts, n = cfg.ppo.prompts
        let active = iteration <= curriculumIterations && !priority.isEmpty ? priority : pool
        var batch: [Int] = []
        for k in 0..<n {
            let position = (iteration - 1) * n + k, epoch = position / active.count
            if orderKey?.epoch != epoch || orderKey?.pool != active.count {
                var orderRNG = RNG(
                    seed: cfg.run.seed &+ 0xA11 &+ UInt64(epoch)
                        &+ (active.count == prompts.count ? 0 : UInt64(active.count) &* 0x1F))
                order = active
                shuffle(&order, &orderRNG)
                orderKey = (active.count, epoch)
            }
            batch.append(order[position % active.count])
        }
        let offset = colocated ? transport.rank * myPrompts : 0
        let mine = batch[offset..<(offset + myPrompts)].flatMap { Array(repeating: $0, count: cfg.ppo.samples) }
        return (mine.map { prompts[$0] }, mine, active.count)
    }

    /// 1. Rollout: sample responses from the policy.
    func rollout(_ iteration: Int) async throws -> Rollout {
        let started = Date()
        let (prompts, indices, poolSize) = draw(iteration)
        let p = cfg.ppo
        let options = SamplingOptions(
            temperature: p.temperature, topK: p.topK, topP: p.topP, maxNewTokens: p.maxNewTokens,
            eosTokenId: tokenizer.eosTokenId, seed: cfg.run.seed &+ UInt64(iteration) &* 7919 &+ UInt64(transport.rank))
        let out = try await policy.generate(prompts: prompts.map(\.tokens), options: options)
        return Rollout(
            iteration: iteration, prompts: prompts, promptIndices: indices, tokens: out.tokens,
            endedWithEOS: out.endedWithEOS,
            sequences: zip(prompts, out.tokens).map { $0.tokens + $1 }, promptLengths: prompts.map(\.tokens.count),
            texts: out.tokens.map { tokenizer.decode($0, skipSpecialTokens: true) }, sampledLogProbs: out.logProbs,
            promptPool: poolSize,
            seconds: Date().timeIntervalSince(started))
    }

    /// The scoring passes over `sequences`, with the states the reward sources need (`needs`);
    /// `policyPass` false skips the policy's log-probs (selecting prompts needs none).
    func scoringPasses(_ sequences: [[Int32]], needs: RewardPassNeeds, policyPass: Bool = true) async throws
        -> ScoringPasses
    {
        var p = ScoringPasses()
        if needs.contains(.lastHidden) {
            (p.reference, p.lastHidden) = try await scorer.referenceAndLastHidden(sequences)
            p.headScores = roles.rewardHead.forward(hidden: p.lastHidden.flatMap { $0 }, rows: p.lastHidden.count)
        } else if onePass {
            (p.reference, p.headScores) = try await scorer.referenceAndScores(sequences)
        } else {
            p.reference = try await reference.logProbs(sequences)
            p.headScores = try await reward.scores(sequences)
        }
        guard policyPass else { return p }
        // States are read only colocated (checked at start), where the policy is this rank's own.
        if needs.contains(.policyHidden) {
            (p.policy, p.policyHidden) = try await roles.policy.logProbsAndHidden(sequences)
        } else {
            p.policy = try await policy.logProbs(sequences)
        }
        return p
    }

    /// What the reward sources read of a batch of `prompts` and their responses.
    func rewardBatch(
        prompts: [PPOPrompt], indices: [Int], texts: [String], sequences: [[Int32]], passes: ScoringPasses,
        iteration: Int, purpose: RewardPurpose
    ) -> RewardBatch {
        var batch = RewardBatch(
            texts: texts, answers: prompts.map(\.answer), tasks: prompts.map(\.task), questions: prompts.map(\.text),
            promptIndices: indices, sequences: sequences, promptLengths: prompts.map(\.tokens.count),
            headScores: passes.headScores.map(Double.init))
        (batch.lastHidden, batch.policyHidden, batch.iteration, batch.purpose) = (
            passes.lastHidden, passes.policyHidden, iteration, purpose
        )
        return batch
    }

    /// Whether the old log-probs are the sampling pass's (`ppo.old_logprobs`); a source that reads
    /// the policy's states needs the policy pass anyway, and takes its log-probs from it.
    var oldLogProbsFromSampling: Bool { cfg.ppo.oldLogProbs == .sampling && !sourceNeeds.contains(.policyHidden) }

    /// 2. Score: reference and old log-probs, values, the reward of every source, the KL per token.
    func score(_ r: Rollout) async throws -> ScoredRollout {
        let sequences = r.sequences
        var passes = try await scoringPasses(sequences, needs: sourceNeeds, policyPass: !oldLogProbsFromSampling)
        if oldLogProbsFromSampling {
            // Rows as a policy pass gives them, [S−1]: the prompt's tokens (never read) as 0.
            passes.policy = r.sampledLogProbs.enumerated().map { i, row in
                [Float](repeating: 0, count: r.promptLengths[i] - 1) + row
            }
        }
        let critic = cfg.ppo.estimator.needsCritic
        let valuesAll = critic ? try await self.critic.values(sequences) : []
        // Response positions: log-probs of tokens[1...] are shifted by one, values are not.
        func response<T>(_ rows: [[T]], shift: Int = 1) -> [[T]] {
            rows.enumerated().map { i, row in Array(row[(r.promptLengths[i] - shift)..<(sequences[i].count - shift)]) }
        }
        let refLogp = response(passes.reference), oldLogp = response(passes.policy)
        var batch = rewardBatch(
            prompts: r.prompts, indices: r.promptIndices, texts: r.texts, sequences: sequences, passes: passes,
            iteration: r.iteration, purpose: .training)
        let rewards = try await RewardSources.compose(sources, batch: batch, replicas: replicas)
        (batch.lastHidden, batch.policyHidden) = ([], [])
        let klTokens = sequences.indices.map {
            PPOMath.kl(oldLogp[$0].map(Double.init), refLogp[$0].map(Double.init), estimator: cfg.ppo.klEstimator)
        }
        return ScoredRollout(
            referenceLogProbs: refLogp, oldLogProbs: oldLogp, oldValues: critic ? response(valuesAll) : [],
            rewards: rewards,
            scores: finalScores(rewards.total, endedWithEOS: r.endedWithEOS),
            gold: RewardSources.gold(rewards, config: cfg.rewardConfig), klTokens: klTokens, beta: kl.beta,
            policyLogProbs: passes.policy, batch: batch,
            precisionFigures: try await precisionGap(r, sampled: oldLogp) ?? [:])
    }

    /// What bf16 costs, on the first iteration and every evaluation's: the sampled tokens' log-probs
    /// under bf16 (as sampled, or as the policy pass gave them) against an fp32 pass of the same
    /// policy over the same tokens — the mean |Δ log-prob| per token and KL(bf16 ‖ fp32) by k1 on
    /// the sampled tokens. Colocated only (the fp32 pass runs on this rank's policy). In Hydra the
    /// policy's trunk keeps its projections in bf16 only, so the fp32 pass reads them rounded and the
    /// figures leave their rounding out; a separate-layout policy holds all its fp32 weights, and
    /// there they measure all of it (docs/architecture.md §12).
    func precisionGap(_ r: Rollout, sampled: [[Float]]) async throws -> [String: Double]? {
        guard cfg.run.precision.precision == .bf16, colocated,
            r.iteration == 1 || cfg.cadence.evaluates(after: r.iteration, of: cfg.ppo.iterations)
        else { return nil }
        let exact = try await MatmulWeights.$exact.withValue(true) { try await roles.policy.logProbs(r.sequences) }
        var absolute = 0.0, kl = 0.0, tokens = 0.0
        for (i, row) in sampled.enumerated() {
            for (t, lp) in row.enumerated() {
                let d = Double(lp) - Double(exact[i][r.promptLengths[i] - 1 + t])
                absolute += abs(d)
                kl += d
                tokens += 1
            }
        }
        let sums = try await NamedSums(["absolute": absolute, "kl": kl, "tokens": tokens]).summed(over: replicas)
        let n = max(sums["tokens"], 1)
        return ["bf16_logprob_gap": sums["absolute"] / n, "bf16_kl": sums["kl"] / n]
    }

    /// The sequence reward less the missing-EOS penalty, clipped to ±ppo.reward_clip.
    func finalScores(_ total: [Double], endedWithEOS: [Bool]) -> [Double] {
        let clip = cfg.ppo.rewardClip, penalty = cfg.ppo.missingEOSPenalty
        return total.enumerated().map { i, r in min(max(r - (endedWithEOS[i] ? 0 : penalty), -clip), clip) }
    }

    /// 3. Advantages by the configured estimator (docs/algorithms.md §2.2, §10).
    func advantages(_ r: Rollout, _ s: ScoredRollout) async throws -> Advantages {
        let p = cfg.ppo, beta = s.beta, estimator = p.estimator
        let groups = (0..<myPrompts).map { k in Array((k * p.samples)..<((k + 1) * p.samples)) }
        var out = Advantages(advantages: [], returns: [])
        switch estimator {
        case .gae:
            for i in r.sequences.indices {
                let shaped = PPOMath.shapedRewards(kl: s.klTokens[i], beta: beta, score: s.scores[i])
                let (a, g) = PPOMath.gae(
                    rewards: shaped, values: s.oldValues[i].map(Double.init), gamma: p.gamma, lambda: p.lambda)
                out.advantages.append(a)
                out.returns.append(g)
            }
            if p.whitenAdvantages { out.advantages = try await whiten(out.advantages, unbiased: true) }
        case .grpo, .drGRPO, .rloo:
            // KL as a sequence-level penalty on the reward (TRL RLOO), then the group baseline.
            let penalised = s.scores.enumerated().map { $1 - beta * s.klTokens[$0].reduce(0, +) }
            let perSample = GroupAdvantages.compute(estimator, rewards: penalised, groups: groups)
            out.advantages = r.sequences.indices.map { Array(repeating: perSample[$0], count: s.klTokens[$0].count) }
        case .reinforce, .reinforceBaseline:
            let base =
                estimator == .reinforceBaseline
                ? GroupAdvantages.compute(.reinforceBaseline, rewards: s.scores, groups: groups) : s.scores
            out.advantages = r.sequences.indices.map {
                PPOMath.returns(
                    rewards: PPOMath.shapedRewards(kl: s.klTokens[$0], beta: beta, score: base[$0]), gamma: p.gamma)
            }
            if p.whitenAdvantages { out.advantages = try await whiten(out.advantages, unbiased: false) }
        }
        return out
    }

    /// Whitening over the samples of every rank rolling out (one formula: PPOMath.whiten).
    func whiten(_ rows: [[Double]], unbiased: Bool) async throws -> [[Double]] {
        var moments = PPOMath.Moments(rows)
        moments = try await moments.summed(over: replicas)
        return PPOMath.whiten(rows, moments: moments, unbiased: unbiased)
    }

    /// 4. Update: epochs × minibatches of policy (and PPO-ptx) and critic steps, at this
    /// iteration's learning rates (cosine decay, no warm-up).
    func update(_ r: Rollout, _ s: ScoredRollout, _ a: Advantages) async throws -> UpdateStats {
        let started = Date(), p = cfg.ppo
        let decay = LearningRateSchedule(peak: 1, minRatio: p.minLRRatio, warmupSteps: 0, totalSteps: p.iterations)
            .rate(step: r.iteration)
        var stats = UpdateStats(policyLearningRate: p.lr * decay)
        let criticLR = p.criticLR * decay
        var shuffleRNG = RNG(seed: cfg.run.seed &+ UInt64(r.iteration) &* 31)
        for _ in 0..<p.epochs {
            var indices = Array(r.sequences.indices)
            shuffle(&indices, &shuffleRNG)
            for start in stride(from: 0, to: indices.count, by: p.minibatchSize) {
                let part = Array(indices[start..<min(start + p.minibatchSize, indices.count)])
                let targets = PPOTargets(
                    promptLengths: part.map { r.promptLengths[$0] }, oldLogProbs: part.map { s.oldLogProbs[$0] },
                    advantages: part.map { a.advantages[$0].map(Float.init) }, clipLow: p.clip, clipHigh: p.clip,
                    dualClip: p.dualClip, entropyCoefficient: p.entropyCoef)
                stats.steps.append(
                    try await policy.trainStep(
                        part.map { r.sequences[$0] }, objective: .ppo(targets),
                        learningRate: stats.policyLearningRate, maxGradNorm: p.gradClip))
                if !data.ptxDemos.isEmpty {
                    try await ptxStep(count: part.count, learningRate: stats.policyLearningRate)
                }
                if p.estimator.needsCritic {
                    let v = try await critic.trainStep(
                        part.map { r.sequences[$0] },
                        objective: .clippedValue(
                            promptLengths: part.map { r.promptLengths[$0] }, oldValues: part.map { s.oldValues[$0] },
                            returns: part.map { a.returns[$0].map(Float.init) }, clip: p.valueClip),
                        learningRate: criticLR, maxGradNorm: p.gradClip)
                    stats.valueLosses.append(v.loss)
                }
            }
        }
        // The minibatches' activations go before the next rollout allocates its KV cache.
        await policy.releaseBuffers()
        await critic.releaseBuffers()
        stats.seconds = Date().timeIntervalSince(started)
        return stats
    }

    /// PPO-ptx: −γ_ptx · mean log-likelihood of `count` demonstration completions (loss on
    /// completion tokens only), the next demonstrations in the cursor's order.
    func ptxStep(count: Int, learningRate: Float) async throws {
        let all = data.ptxDemos
        let demos = (0..<count).map { k in all[(ptxCursor + k) % all.count] }
        ptxCursor += count
        let tokens = demos.reduce(0) { $0 + $1.lossTokens }
        let coef = Float(cfg.ppo.ptxCoef) / Float(max(tokens, 1))
        _ = try await policy.trainStep(
            demos.map { $0.tokens + [$0.targets.last!] },
            objective: .weightedLogLikelihood(weights: demos.map { $0.targets.map { $0 >= 0 ? coef : 0 } }),
            learningRate: learningRate, maxGradNorm: cfg.ppo.gradClip)
    }

    /// 5a. The batch's figures, summed over every rank rolling out: counts, Σx and Σx² of the
    /// reward, the gold reward and each source, and each source's own sums.
    func summarize(_ r: Rollout, _ s: ScoredRollout) async throws -> PPOBatchSums {
        var sums = PPOBatchSums()
        sums.samples = Double(r.sequences.count)
        sums.kl = s.klTokens.map { $0.reduce(0, +) }.reduce(0, +)
        sums.responseTokens = r.tokens.map { Double($0.count) }.reduce(0, +)
        sums.truncated = Double(r.endedWithEOS.filter { !$0 }.count)
        sums.reward = SumOfSquares(s.scores)
        sums.gold = SumOfSquares(s.gold)
        sums.sources = sources.map { SumOfSquares(s.rewards.bySource[$0.name] ?? []) }
        sums.sourceSums = sources.map { $0.sums(s.batch, gold: s.gold) }
        return try await sums.summed(over: replicas)
    }

    /// 5b. The KL controller's step on the iteration's mean KL (adaptive control moves β).
    func adaptKL(to sums: PPOBatchSums) {
        kl.update(observedKL: sums.kl / sums.samples, steps: Int(sums.samples))
    }

    /// 5c. The reward sources with state learn from the iteration (online reward models,
    /// bandits); returns the figures they log.
    func updateRewardSources(_ r: Rollout, _ s: ScoredRollout) async throws -> [String: Double] {
        let update = RewardUpdate(
            iteration: r.iteration, promptLengths: r.promptLengths, sequences: r.sequences,
            oldLogProbs: s.policyLogProbs,
            groupSize: cfg.ppo.samples, policy: roles.policy, scorer: scorer, replicas: replicas)
        var figures: [String: Double] = [:]
        for source in sources { figures.merge(try await source.update(update)) { a, _ in a } }
        return figures
    }

    /// 5d. The iteration's metrics record.
    func metrics(
        _ r: Rollout, _ s: ScoredRollout, _ stats: UpdateStats, sums: PPOBatchSums, sourceUpdates: [String: Double],
        seconds: (score: Double, communicate: Double)
    ) -> PPOMetrics {
        var figures = sourceUpdates.merging(s.precisionFigures) { a, _ in a }
        for (k, source) in sources.enumerated() {
            figures.merge(source.figures(sums.sourceSums[k], samples: sums.samples)) { a, _ in a }
        }
        return PPOMetrics(
            iteration: r.iteration, sums: sums, sourceNames: sources.map(\.name), headline: headline,
            klCoefficient: s.beta,
            promptPool: r.promptPool, policyLoss: stats.mean(\.loss), clipFraction: stats.mean(\.clipFraction),
            entropy: stats.mean(\.entropy), gradNorm: stats.mean(\.gradNorm),
            valueLoss: stats.valueLosses.isEmpty
                ? nil : Double(stats.valueLosses.reduce(0, +)) / Double(stats.valueLosses.count),
            learningRate: Double(stats.policyLearningRate), generateSeconds: r.seconds, scoreSeconds: seconds.score,
            trainSeconds: stats.seconds, communicateSeconds: seconds.communicate, sourceFigures: figures)
    }
}

/// The whitening moments are summed over the ranks rolling out like every other batch figure.
extension PPOMath.Moments: RankSums {}
