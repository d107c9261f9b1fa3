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
    /// With dynamic sampling: the groups dropped and refilled, and the rollouts drawn.
    var samplingFigures: [String: Double] = [:]
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

extension ScoringPasses {
    /// The passes of the next unit's sequences after these.
    mutating func append(_ next: ScoringPasses) {
        reference += next.reference
        headScores += next.headScores
        policy += next.policy
        lastHidden += next.lastHidden
        policyHidden += next.policyHidden
    }
}

/// Per-token advantages and (GAE) returns.
struct Advantages { var advantages: [[Double]], returns: [[Double]] }

/// What the update phase did.
struct UpdateStats {
    var steps: [StepStats] = [], valueLosses: [Float] = []
    var policyLearningRate: Float = 0
    var seconds = 0.0
    /// What the log shows (`figures(over:globalSteps:)`).
    var figures = UpdateFigures()
    func mean(_ value: (StepStats) -> Float) -> Double {
        Double(steps.map(value).reduce(0, +)) / Double(max(steps.count, 1))
    }

    /// The logged figures of the update. Alone, means over this rank's steps; over `replicas`, each
    /// step's losses are the sums of the ranks' shares of its token mean (over `globalSteps`), the
    /// other figures means over every rank's steps. A collective.
    func figures(over replicas: (any Transport)?, globalSteps: Int) async throws -> UpdateFigures {
        guard let replicas, replicas.size > 1 else {
            return UpdateFigures(
                policyLoss: mean(\.loss), clipFraction: mean(\.clipFraction), entropy: mean(\.entropy),
                gradNorm: mean(\.gradNorm),
                valueLoss: valueLosses.isEmpty ? nil : Double(valueLosses.reduce(0, +)) / Double(valueLosses.count))
        }
        func sum(_ value: (StepStats) -> Float) -> Double { steps.map { Double(value($0)) }.reduce(0, +) }
        let t = try await replicas.allReduce(
            [
                sum(\.loss), sum(\.clipFraction), sum(\.entropy), sum(\.gradNorm), Double(steps.count),
                valueLosses.map(Double.init).reduce(0, +), Double(valueLosses.count),
            ], op: .sum)
        let n = max(t[4], 1), stepCount = Double(max(globalSteps, 1))
        return UpdateFigures(
            policyLoss: t[0] / stepCount, clipFraction: t[1] / n, entropy: t[2] / n, gradNorm: t[3] / n,
            valueLoss: t[6] > 0 ? t[5] / stepCount : nil)
    }
}

struct UpdateFigures {
    var policyLoss = 0.0, clipFraction = 0.0, entropy = 0.0, gradNorm = 0.0
    var valueLoss: Double?
}

extension PPOSession {
    /// rollout → score → advantages → update → report (docs/algorithms.md §2): one iteration. The
    /// report's phases are named: the figures summed over the ranks, the KL controller's step,
    /// the reward sources' own updates.
    func iteration(_ iteration: Int) async throws -> PPOMetrics {
        let communicationStart = CommunicationClock.seconds
        let started = Date()
        let (rollout, scored) =
            cfg.recipe.dynamicSampling
            ? try await dynamicRollout(iteration) : try await scoredRollout(iteration, round: 1)
        // Every rank's sequences, in the global batch's order: all that follows reads the same numbers.
        let global = try await GlobalBatch.gather(rollout, scored, over: replicas)
        let advantages = self.advantages(global, beta: scored.beta)
        try writeSamples(rollout, scored, advantages)
        // Scoring's time: all but the rollouts' (rounds of both with dynamic sampling).
        let scoreSeconds = Date().timeIntervalSince(started) - rollout.seconds
        let stats = try await update(iteration, global, advantages)
        let sums = try await summarize(rollout, scored, global)
        adaptKL(to: sums)
        let sourceUpdates = try await updateRewardSources(rollout, scored)
        return metrics(
            rollout, scored, stats, sums: sums, sourceUpdates: sourceUpdates,
            seconds: (scoreSeconds, CommunicationClock.seconds - communicationStart))
    }

    /// The rollout of `iteration` (its `round`th with dynamic sampling), scored.
    func scoredRollout(_ iteration: Int, round: Int) async throws -> (Rollout, ScoredRollout) {
        let rollout = try await self.rollout(iteration, round: round)
        return (rollout, try await score(rollout))
    }

    /// The prompts of `iteration`: the global batch in the pool's seeded order (a new order each
    /// pass), this rank's share of it, each repeated `samples` times. Dynamic sampling's later
    /// rounds draw from positions past the run's own (round r: as iteration (r − 1)·iterations + i).
    func draw(_ iteration: Int, round: Int = 1) -> (prompts: [PPOPrompt], indices: [Int], pool: Int) {
        let prompts = data.prompts, n = cfg.ppo.prompts
        let active = iteration <= curriculumIterations && !priority.isEmpty ? priority : pool
        let slot = (round - 1) * cfg.ppo.iterations + iteration - 1
        var batch: [Int] = []
        for k in 0..<n {
            let position = slot * n + k, epoch = position / active.count
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
    func rollout(_ iteration: Int, round: Int = 1) async throws -> Rollout {
        let started = Date()
        let (prompts, indices, poolSize) = draw(iteration, round: round)
        let p = cfg.ppo
        let options = SamplingOptions(
            temperature: p.temperature, topK: p.topK, topP: p.topP, maxNewTokens: p.maxNewTokens,
            eosTokenId: tokenizer.eosTokenId, stopTokenIds: tokenizer.stopTokenIds, seed: 0)
        var out = GenerationResult(tokens: [], logProbs: [], hiddenStates: nil, endedWithEOS: [])
        for unit in rolloutUnits(prompts.count) {
            var seeded = options
            seeded.seed =
                cfg.run.seed &+ UInt64(iteration) &* 7919 &+ UInt64(unit.index) &+ UInt64(round - 1) &* 104_729
            let part = try await policy.generate(prompts: prompts[unit.range].map(\.tokens), options: seeded)
            out.tokens += part.tokens
            out.logProbs += part.logProbs
            out.endedWithEOS += part.endedWithEOS
        }
        let texts = stopped(&out)
        return Rollout(
            iteration: iteration, prompts: prompts, promptIndices: indices, tokens: out.tokens,
            endedWithEOS: out.endedWithEOS,
            sequences: zip(prompts, out.tokens).map { $0.tokens + $1 }, promptLengths: prompts.map(\.tokens.count),
            texts: texts, sampledLogProbs: out.logProbs, promptPool: poolSize,
            seconds: Date().timeIntervalSince(started))
    }

    /// A response's text as the rewards and the held-out evaluations read it: cut at the first
    /// stop string (`ppo.stop`).
    func responseText(_ tokens: [Int32]) -> String {
        cfg.recipe.stop.cut(tokens, tokenizer: tokenizer)?.text ?? tokenizer.decode(tokens, skipSpecialTokens: true)
    }

    /// The responses' texts, each cut at the first stop string (`ppo.stop`): its tokens end with the
    /// one completing the string, and it counts as finished.
    func stopped(_ out: inout GenerationResult) -> [String] {
        out.tokens.indices.map { i in
            guard let cut = cfg.recipe.stop.cut(out.tokens[i], tokenizer: tokenizer) else {
                return tokenizer.decode(out.tokens[i], skipSpecialTokens: true)
            }
            out.tokens[i] = Array(out.tokens[i].prefix(cut.count))
            out.logProbs[i] = Array(out.logProbs[i].prefix(cut.count))
            out.endedWithEOS[i] = true
            return cut.text
        }
    }

    /// This rank's rollout units (`ppo.rollout_batch` sequences, or its whole share): where each is
    /// in its `count` sequences, and its place in the global batch (which seeds its sampling).
    func rolloutUnits(_ count: Int) -> [(range: Range<Int>, index: Int)] {
        let size = cfg.ppo.rolloutBatch > 0 ? min(cfg.ppo.rolloutBatch, max(count, 1)) : max(count, 1)
        let first = (colocated ? transport.rank : 0) * (count / size)
        return stride(from: 0, to: count, by: size).enumerated().map { k, start in
            (start..<min(start + size, count), first + k)
        }
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
        var passes = ScoringPasses(), valuesAll: [[Float]] = []
        let critic = cfg.ppo.estimator.needsCritic
        // Unit by unit: a pass's batch is the same at any number of ranks (ppo.rollout_batch).
        for unit in rolloutUnits(sequences.count) {
            let part = Array(sequences[unit.range])
            passes.append(try await scoringPasses(part, needs: sourceNeeds, policyPass: !oldLogProbsFromSampling))
            if critic { valuesAll += try await self.critic.values(part) }
        }
        if oldLogProbsFromSampling {
            // Rows as a policy pass gives them, [S−1]: the prompt's tokens (never read) as 0.
            passes.policy = r.sampledLogProbs.enumerated().map { i, row in
                [Float](repeating: 0, count: r.promptLengths[i] - 1) + row
            }
        }
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
            scores: finalScores(rewards.total, endedWithEOS: r.endedWithEOS, lengths: r.tokens.map(\.count)),
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

    /// The sequence reward plus DAPO's soft overlong punishment of its `lengths` (ppo.overlong_buffer),
    /// less the missing-EOS penalty, clipped to ±ppo.reward_clip.
    func finalScores(_ total: [Double], endedWithEOS: [Bool], lengths: [Int]) -> [Double] {
        let clip = cfg.ppo.rewardClip, penalty = cfg.ppo.missingEOSPenalty, recipe = cfg.recipe
        return total.enumerated().map { i, r in
            let overlong =
                recipe.overlongBuffer > 0
                ? overlongPenalty(
                    length: lengths[i], limit: cfg.ppo.maxNewTokens, buffer: recipe.overlongBuffer,
                    factor: recipe.overlongPenalty) : 0
            return min(max(r + overlong - (endedWithEOS[i] ? 0 : penalty), -clip), clip)
        }
    }

    /// 3. Advantages by the configured estimator (docs/algorithms.md §2.2, §10), over the global
    /// batch (every rank computes all of them: the same numbers at any number of ranks).
    func advantages(_ g: GlobalBatch, beta: Double) -> Advantages {
        let p = cfg.ppo, estimator = p.estimator
        let groups = (0..<(g.count / p.samples)).map { k in Array((k * p.samples)..<((k + 1) * p.samples)) }
        var out = Advantages(advantages: [], returns: [])
        switch estimator {
        case .gae:
            for i in 0..<g.count {
                let shaped = PPOMath.shapedRewards(kl: g.klTokens[i], beta: beta, score: g.scores[i])
                let (a, r) = PPOMath.gae(
                    rewards: shaped, values: g.oldValues[i].map(Double.init), gamma: p.gamma, lambda: p.lambda)
                out.advantages.append(a)
                out.returns.append(r)
            }
            if p.whitenAdvantages { out.advantages = PPOMath.whiten(out.advantages, unbiased: true) }
        case .grpo, .drGRPO, .rloo:
            // KL as a sequence-level penalty on the reward (TRL RLOO), then the group baseline.
            let penalised = g.scores.enumerated().map { $1 - beta * g.klTokens[$0].reduce(0, +) }
            let perSample = GroupAdvantages.compute(estimator, rewards: penalised, groups: groups)
            out.advantages = (0..<g.count).map { Array(repeating: perSample[$0], count: g.klTokens[$0].count) }
        case .reinforce, .reinforceBaseline:
            let base =
                estimator == .reinforceBaseline
                ? GroupAdvantages.compute(.reinforceBaseline, rewards: g.scores, groups: groups) : g.scores
            out.advantages = (0..<g.count).map {
                PPOMath.returns(
                    rewards: PPOMath.shapedRewards(kl: g.klTokens[$0], beta: beta, score: base[$0]), gamma: p.gamma)
            }
            if p.whitenAdvantages { out.advantages = PPOMath.whiten(out.advantages, unbiased: false) }
        }
        return out
    }

    /// Sequences per forward and backward pass on a rank: `ppo.micro_batch_size`, or the
    /// minibatch split over the ranks rolling out.
    var microBatchSize: Int {
        cfg.ppo.microBatchSize > 0 ? cfg.ppo.microBatchSize : max(1, cfg.ppo.minibatchSize / dataRanks)
    }

    /// 4. Update: epochs × minibatches of policy (and PPO-ptx) and critic steps, at this
    /// iteration's learning rates (cosine decay, no warm-up). A minibatch is drawn from the global
    /// batch; each rank computes its micro-batches of it and the step sums them over the ranks.
    func update(_ iteration: Int, _ g: GlobalBatch, _ a: Advantages) async throws -> UpdateStats {
        let started = Date(), p = cfg.ppo
        let decay = LearningRateSchedule(peak: 1, minRatio: p.minLRRatio, warmupSteps: 0, totalSteps: p.iterations)
            .rate(step: iteration)
        var stats = UpdateStats(policyLearningRate: p.lr * decay)
        let criticLR = p.criticLR * decay
        var shuffleRNG = RNG(seed: cfg.run.seed &+ UInt64(iteration) &* 31)
        var globalSteps = 0
        for _ in 0..<p.epochs {
            var order = Array(0..<g.count)
            shuffle(&order, &shuffleRNG)
            let steps = UpdateStep.epoch(
                order: order, minibatch: p.minibatchSize, microBatch: microBatchSize,
                rank: colocated ? transport.rank : 0, ranks: dataRanks, responseLength: g.responseLength)
            globalSteps += steps.count
            for step in steps {
                let part = step.mine, sequences = part.map { g.sequences[$0] }
                let targets = PPOTargets(
                    promptLengths: part.map { g.promptLengths[$0] }, oldLogProbs: part.map { g.oldLogProbs[$0] },
                    advantages: part.map { a.advantages[$0].map(Float.init) }, clipLow: cfg.recipe.clipLow,
                    clipHigh: cfg.recipe.clipHigh, dualClip: p.dualClip, entropyCoefficient: p.entropyCoef,
                    divisors: divisors(step, g), sequenceRatio: cfg.recipe.ratio == .sequence)
                let policyStep = try await policy.trainStep(
                    sequences, objective: .ppo(targets), shape: step.shape, learningRate: stats.policyLearningRate,
                    maxGradNorm: p.gradClip)
                if !part.isEmpty { stats.steps.append(policyStep) }
                if !data.ptxDemos.isEmpty {  // each rank its own demonstrations: a share of the step's size
                    let count = (step.size + dataRanks - 1) / dataRanks
                    try await ptxStep(count: count, learningRate: stats.policyLearningRate)
                }
                if p.estimator.needsCritic {
                    let v = try await critic.trainStep(
                        sequences,
                        objective: .clippedValue(
                            promptLengths: part.map { g.promptLengths[$0] }, oldValues: part.map { g.oldValues[$0] },
                            returns: part.map { a.returns[$0].map(Float.init) }, clip: p.valueClip),
                        shape: step.shape, learningRate: criticLR, maxGradNorm: p.gradClip)
                    if !part.isEmpty { stats.valueLosses.append(v.loss) }
                }
            }
        }
        // The minibatches' activations go before the next rollout allocates its KV cache.
        await policy.releaseBuffers()
        await critic.releaseBuffers()
        stats.figures = try await stats.figures(over: replicas, globalSteps: globalSteps)
        stats.seconds = Date().timeIntervalSince(started)
        return stats
    }

    /// Each of this rank's sequences of `step`: what its token terms are divided by
    /// (`ppo.loss_aggregation` over the step's sequences on every rank), 0 for one the overlong
    /// filter leaves out; empty for the plain token mean over the step (the divisor `StepShape.tokens`).
    func divisors(_ step: UpdateStep, _ g: GlobalBatch) -> [Int] {
        let recipe = cfg.recipe
        guard recipe.lossAggregation != .tokenMean || recipe.overlongFilter else { return [] }
        // DAPO's overlong filter: a response cut at the length limit teaches nothing about its end.
        func kept(_ i: Int) -> Bool { !recipe.overlongFilter || g.endedWithEOS[i] }
        let members = step.members.filter(kept)
        let tokens = members.map(g.responseLength).reduce(0, +)
        return step.mine.map { i in
            kept(i)
                ? recipe.lossAggregation.divisor(
                    tokens: g.responseLength(i), sequences: members.count, totalTokens: tokens,
                    maxTokens: cfg.ppo.maxNewTokens) : 0
        }
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
    func summarize(_ r: Rollout, _ s: ScoredRollout, _ g: GlobalBatch) async throws -> PPOBatchSums {
        var sums = PPOBatchSums()
        sums.sources = sources.map { SumOfSquares(s.rewards.bySource[$0.name] ?? []) }
        sums.sourceSums = sources.map { $0.sums(s.batch, gold: s.gold) }
        sums = try await sums.summed(over: replicas)
        // What the KL controller and the log's headline read: from the global batch, in its order.
        sums.samples = Double(g.count)
        sums.kl = g.klTokens.map { $0.reduce(0, +) }.reduce(0, +)
        sums.responseTokens = (0..<g.count).map { Double(g.responseLength($0)) }.reduce(0, +)
        sums.truncated = Double(g.endedWithEOS.filter { !$0 }.count)
        sums.reward = SumOfSquares(g.scores)
        sums.gold = SumOfSquares(g.gold)
        return sums
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
        var figures = sourceUpdates.merging(s.precisionFigures) { a, _ in a }.merging(s.samplingFigures) { a, _ in a }
        for (k, source) in sources.enumerated() {
            figures.merge(source.figures(sums.sourceSums[k], samples: sums.samples)) { a, _ in a }
        }
        return PPOMetrics(
            iteration: r.iteration, sums: sums, sourceNames: sources.map(\.name), headline: headline,
            klCoefficient: s.beta,
            promptPool: r.promptPool, policyLoss: stats.figures.policyLoss, clipFraction: stats.figures.clipFraction,
            entropy: stats.figures.entropy, gradNorm: stats.figures.gradNorm, valueLoss: stats.figures.valueLoss,
            learningRate: Double(stats.policyLearningRate), generateSeconds: r.seconds, scoreSeconds: seconds.score,
            trainSeconds: stats.seconds, communicateSeconds: seconds.communicate, sourceFigures: figures)
    }
}
