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
    let prompts: [PPOPrompt]        // [B] each prompt repeated `samples` times
    let promptIndices: [Int]        // [B]
    let tokens: [[Int32]]           // [B] response tokens
    let endedWithEOS: [Bool]        // [B]
    let sequences: [[Int32]]        // [B] prompt + response
    let promptLengths: [Int]        // [B]
    let texts: [String]             // [B] decoded responses
    let promptPool: Int             // prompts the iteration drew from
    let seconds: Double
}

/// The rollout scored: log-probs of the reference and of the policy that sampled it, values,
/// the reward by source and the per-token KL.
struct ScoredRollout {
    let referenceLogProbs: [[Float]]   // [B][A]
    let oldLogProbs: [[Float]]         // [B][A]
    let oldValues: [[Float]]           // [B][A] (estimators with a critic)
    let rewards: RewardBreakdown
    let scores: [Double]               // [B] the sequence reward, EOS penalty and clip applied
    let gold: [Double]                 // [B] exact answer + format rule (logged, never optimised)
    let klTokens: [[Double]]           // [B][A]
    let beta: Double                   // the KL coefficient used
    let learned: LearnedRewards.Scored?
}

/// Per-token advantages and (GAE) returns.
struct Advantages { var advantages: [[Double]], returns: [[Double]] }

/// What the update phase did.
struct UpdateStats {
    var steps: [StepStats] = [], valueLosses: [Float] = []
    var policyLearningRate: Float = 0
    var seconds = 0.0
    func mean(_ value: (StepStats) -> Float) -> Double { Double(steps.map(value).reduce(0, +)) / Double(max(steps.count, 1)) }
}

extension PPOSession {
    /// rollout → score → advantages → update → report (algorithms.md §2): one iteration.
    func iteration(_ iteration: Int) async throws -> PPOMetrics {
        let communicationStart = CommunicationClock.seconds
        let rollout = try await self.rollout(iteration)
        let scoreStart = Date()
        let scored = try await score(rollout)
        let advantages = try await self.advantages(rollout, scored)
        let scoreSeconds = Date().timeIntervalSince(scoreStart)
        let stats = try await update(rollout, scored, advantages)
        return try await report(rollout, scored, stats, scoreSeconds: scoreSeconds,
                                communicateSeconds: { CommunicationClock.seconds - communicationStart })
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
                var orderRNG = RNG(seed: cfg.run.seed &+ 0xA11 &+ UInt64(epoch) &+ (active.count == prompts.count ? 0 : UInt64(active.count) &* 0x1F))
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
        let options = SamplingOptions(temperature: p.temperature, topK: p.topK, topP: p.topP, maxNewTokens: p.maxNewTokens,
                                      eosTokenId: tokenizer.eosTokenId, seed: cfg.run.seed &+ UInt64(iteration) &* 7919 &+ UInt64(transport.rank))
        let out = try await policy.generate(prompts: prompts.map(\.tokens), options: options)
        return Rollout(iteration: iteration, prompts: prompts, promptIndices: indices, tokens: out.tokens, endedWithEOS: out.endedWithEOS,
                       sequences: zip(prompts, out.tokens).map { $0.tokens + $1 }, promptLengths: prompts.map(\.tokens.count),
                       texts: out.tokens.map { tokenizer.decode($0, skipSpecialTokens: true) }, promptPool: poolSize,
                       seconds: Date().timeIntervalSince(started))
    }

    /// 2. Score: reference and old log-probs, values, the reward of every source, the KL per token.
    func score(_ r: Rollout) async throws -> ScoredRollout {
        let sequences = r.sequences
        let (refAll, headScores, oldAll): ([[Float]], [Float], [[Float]])
        var learnedScores: LearnedRewards.Scored?
        if let learned {
            let s = try await learned.score(sequences, promptLengths: r.promptLengths, iteration: r.iteration, scorer: scorer, policy: roles.policy,
                                            originalHead: roles.rewardHead, replicas: replicas)
            learnedScores = s
            (refAll, headScores, oldAll) = (s.reference, s.original, s.old)
        } else {
            if onePass { (refAll, headScores) = try await scorer.referenceAndScores(sequences) }
            else { refAll = try await reference.logProbs(sequences); headScores = try await reward.scores(sequences) }
            oldAll = try await policy.logProbs(sequences)
        }
        let critic = cfg.ppo.estimator.needsCritic
        let valuesAll = critic ? try await self.critic.values(sequences) : []
        // Response positions: log-probs of tokens[1...] are shifted by one, values are not.
        func response<T>(_ rows: [[T]], shift: Int = 1) -> [[T]] {
            rows.enumerated().map { i, row in Array(row[(r.promptLengths[i] - shift)..<(sequences[i].count - shift)]) }
        }
        let refLogp = response(refAll), oldLogp = response(oldAll)
        var rewards = try RewardSources.compose(sources, batch: RewardBatch(
            texts: r.texts, answers: r.prompts.map(\.answer), tasks: r.prompts.map(\.task), questions: r.prompts.map(\.text),
            promptIndices: r.promptIndices, sequences: sequences, promptLengths: r.promptLengths, headScores: headScores.map(Double.init),
            proxy: learnedScores?.proxy))
        // An arm chosen (laser, random) over named sources: this batch's reward is that source alone.
        if let learned, learned.explicitArms, var scored = learnedScores, let arm = scored.arm {
            let name = learned.armNames[arm]
            if scored.armScores == nil { scored.armScores = rewards.bySource[name] }
            if let values = scored.armScores { rewards.total = values }
            learnedScores = scored
        }
        // The arith task's gold reward; ifeval has none beyond its instructions reward.
        let gold = cfg.data.task == .ifeval ? [Double](repeating: 0, count: sequences.count)
            : zip(rewards.bySource["verifier"]!, rewards.bySource["format"]!).map { $0 + $1 }
        let klTokens = sequences.indices.map { PPOMath.kl(oldLogp[$0].map(Double.init), refLogp[$0].map(Double.init), estimator: cfg.ppo.klEstimator) }
        return ScoredRollout(referenceLogProbs: refLogp, oldLogProbs: oldLogp, oldValues: critic ? response(valuesAll) : [], rewards: rewards,
                             scores: finalScores(rewards.total, endedWithEOS: r.endedWithEOS), gold: gold, klTokens: klTokens, beta: kl.beta,
                             learned: learnedScores)
    }

    /// The sequence reward less the missing-EOS penalty, clipped to ±ppo.reward_clip.
    func finalScores(_ total: [Double], endedWithEOS: [Bool]) -> [Double] {
        let clip = cfg.ppo.rewardClip, penalty = cfg.ppo.missingEOSPenalty
        return total.enumerated().map { i, r in min(max(r - (endedWithEOS[i] ? 0 : penalty), -clip), clip) }
    }

    /// 3. Advantages by the configured estimator (algorithms.md §2.2, §10).
    func advantages(_ r: Rollout, _ s: ScoredRollout) async throws -> Advantages {
        let p = cfg.ppo, beta = s.beta, estimator = p.estimator
        let groups = (0..<myPrompts).map { k in Array((k * p.samples)..<((k + 1) * p.samples)) }
        var out = Advantages(advantages: [], returns: [])
        switch estimator {
        case .gae:
            for i in r.sequences.indices {
                let shaped = PPOMath.shapedRewards(kl: s.klTokens[i], beta: beta, score: s.scores[i])
                let (a, g) = PPOMath.gae(rewards: shaped, values: s.oldValues[i].map(Double.init), gamma: p.gamma, lambda: p.lambda)
                out.advantages.append(a); out.returns.append(g)
            }
            if p.whitenAdvantages { out.advantages = try await whiten(out.advantages, unbiased: true) }
        case .grpo, .drGRPO, .rloo:
            // KL as a sequence-level penalty on the reward (TRL RLOO), then the group baseline.
            let penalised = s.scores.enumerated().map { $1 - beta * s.klTokens[$0].reduce(0, +) }
            let perSample = GroupAdvantages.compute(estimator, rewards: penalised, groups: groups)
            out.advantages = r.sequences.indices.map { Array(repeating: perSample[$0], count: s.klTokens[$0].count) }
        case .reinforce, .reinforceBaseline:
            let base = estimator == .reinforceBaseline ? GroupAdvantages.compute(.reinforceBaseline, rewards: s.scores, groups: groups) : s.scores
            out.advantages = r.sequences.indices.map {
                PPOMath.returns(rewards: PPOMath.shapedRewards(kl: s.klTokens[$0], beta: beta, score: base[$0]), gamma: p.gamma)
            }
            if p.whitenAdvantages { out.advantages = try await whiten(out.advantages, unbiased: false) }
        }
        return out
    }

    /// Whitening over the samples of every rank rolling out (one formula: PPOMath.whiten).
    func whiten(_ rows: [[Double]], unbiased: Bool) async throws -> [[Double]] {
        var moments = PPOMath.Moments(rows)
        if let replicas { moments = PPOMath.Moments(vector: try await replicas.allReduce(moments.vector, op: .sum)) }
        return PPOMath.whiten(rows, moments: moments, unbiased: unbiased)
    }

    /// 4. Update: epochs × minibatches of policy (and PPO-ptx) and critic steps, at this
    /// iteration's learning rates (cosine decay, no warm-up).
    func update(_ r: Rollout, _ s: ScoredRollout, _ a: Advantages) async throws -> UpdateStats {
        let started = Date(), p = cfg.ppo
        let decay = LearningRateSchedule(peak: 1, minRatio: p.minLRRatio, warmupSteps: 0, totalSteps: p.iterations).rate(step: r.iteration)
        var stats = UpdateStats(policyLearningRate: p.lr * decay)
        let criticLR = p.criticLR * decay
        var shuffleRNG = RNG(seed: cfg.run.seed &+ UInt64(r.iteration) &* 31)
        for _ in 0..<p.epochs {
            var indices = Array(r.sequences.indices)
            shuffle(&indices, &shuffleRNG)
            for start in stride(from: 0, to: indices.count, by: p.minibatchSize) {
                let part = Array(indices[start..<min(start + p.minibatchSize, indices.count)])
                let targets = PPOTargets(promptLengths: part.map { r.promptLengths[$0] }, oldLogProbs: part.map { s.oldLogProbs[$0] },
                                         advantages: part.map { a.advantages[$0].map(Float.init) }, clipLow: p.clip, clipHigh: p.clip,
                                         dualClip: p.dualClip, entropyCoefficient: p.entropyCoef)
                stats.steps.append(try await policy.trainStep(part.map { r.sequences[$0] }, objective: .ppo(targets),
                                                              learningRate: stats.policyLearningRate, maxGradNorm: p.gradClip))
                if !data.ptxDemos.isEmpty { try await ptxStep(count: part.count, learningRate: stats.policyLearningRate) }
                if p.estimator.needsCritic {
                    let v = try await critic.trainStep(part.map { r.sequences[$0] }, objective: .clippedValue(
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
        _ = try await policy.trainStep(demos.map { $0.tokens + [$0.targets.last!] },
                                       objective: .weightedLogLikelihood(weights: demos.map { $0.targets.map { $0 >= 0 ? coef : 0 } }),
                                       learningRate: learningRate, maxGradNorm: cfg.ppo.gradClip)
    }

    /// 5. Report: the batch's sums over every rank, the KL controller's step, the reward
    /// sources' updates, and the metrics record.
    func report(_ r: Rollout, _ s: ScoredRollout, _ stats: UpdateStats, scoreSeconds: Double,
                communicateSeconds: () -> Double) async throws -> PPOMetrics {
        var sums = PPOBatchSums()
        sums.samples = Double(r.sequences.count)
        sums.kl = s.klTokens.map { $0.reduce(0, +) }.reduce(0, +)
        sums.responseTokens = r.tokens.map { Double($0.count) }.reduce(0, +)
        sums.truncated = Double(r.endedWithEOS.filter { !$0 }.count)
        sums.reward = .init(s.scores)
        sums.gold = .init(s.gold)
        sums.sources = sources.map { .init(s.rewards.bySource[$0.name] ?? []) }
        sums.proxyEnsemble = s.learned.map { learned!.ensemble($0.perHead, count: r.sequences.count).reduce(0, +) } ?? 0
        let hybrid = sources.lazy.compactMap { $0 as? HybridSource }.first
        sums.routes = hybrid.map { h in
            let routes = HybridReward.Route.allCases
            return routes.map { route in Double(h.lastRoutes.filter { $0 == route }.count) }
                + routes.map { route in h.lastRoutes.indices.filter { h.lastRoutes[$0] == route }.reduce(0) { $0 + s.gold[$1] } }
        } ?? []
        sums = try await sums.allReduced(replicas)
        kl.update(observedKL: sums.kl / sums.samples, steps: Int(sums.samples))
        let policyLoss = stats.mean(\.loss)
        var learnedFigures: [String: Double] = [:]
        if s.learned != nil {
            let update = RewardUpdate(iteration: r.iteration, scored: s.learned, promptLengths: r.promptLengths,
                                      policy: roles.policy, scorer: scorer, replicas: replicas, heldOutPrompts: heldOutPrompts,
                                      sequences: r.sequences, groupSize: cfg.ppo.samples, eosTokenId: tokenizer.eosTokenId)
            for source in sources { learnedFigures.merge(try await source.update(update)) { a, _ in a } }
        }
        return PPOMetrics(iteration: r.iteration, sums: sums, sourceNames: sources.map(\.name), klCoefficient: s.beta, promptPool: r.promptPool,
                          policyLoss: policyLoss, clipFraction: stats.mean(\.clipFraction), entropy: stats.mean(\.entropy), gradNorm: stats.mean(\.gradNorm),
                          valueLoss: stats.valueLosses.isEmpty ? nil : Double(stats.valueLosses.reduce(0, +)) / Double(stats.valueLosses.count),
                          learningRate: Double(stats.policyLearningRate), generateSeconds: r.seconds, scoreSeconds: scoreSeconds,
                          trainSeconds: stats.seconds, communicateSeconds: communicateSeconds(),
                          hasProxy: learned != nil, laserArm: s.learned?.arm, hasRoutes: hybrid != nil, learned: learnedFigures)
    }
}
