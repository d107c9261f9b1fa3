import Alignment
import Cluster
import Foundation
import Kernels
import Models

/// Reference: the trunk with adapters off and the tied LM head. Never trains.
public actor LocalReference: ReferenceRole {
    let trunk: any CausalLM
    public init(trunk: any CausalLM) { self.trunk = trunk }
    public func logProbs(_ sequences: [[Int32]]) async throws -> [[Float]] {
        try trunk.logProbs(sequences, adapter: nil)
    }
}

/// Reward: the trunk with adapters off and a scalar head read at each sequence's last token.
public actor LocalReward: RewardRole {
    let trunk: any CausalLM
    let head: ScalarHead
    public init(trunk: any CausalLM, head: ScalarHead) {
        self.trunk = trunk
        self.head = head
    }
    public func scores(_ sequences: [[Int32]]) async throws -> [Float] {
        // Keep the buffer alive while the head reads its pointer (ARC may free it after `.pointer`).
        let last = try trunk.lastHidden(sequences)
        return withExtendedLifetime(last) { head.forward(hidden: last.pointer, rows: sequences.count) }
    }
}

/// What a trainable role updates: a flat buffer with its layout, gradients and AdamW state.
/// With `replicas`, gradients are summed over the replicas' communicator before every step
/// (data parallelism), so every replica applies the same update. A step of several micro-batches
/// or ranks sums their gradients in Float64 (`GradientSum`): exactly, so the step's gradient does
/// not depend on how its micro-batches were grouped (docs/architecture.md §8).
final class Trainable: @unchecked Sendable {
    let parameters: FloatBuffer
    let gradients: FloatBuffer
    let optimizer: AdamW
    let replicas: (any Transport)?
    /// The step's Float64 sum, allocated for the first step that needs one.
    private var sum: GradientSum?
    init(parameters: FloatBuffer, layout: TensorLayout, hyper: AdamWHyperparameters, replicas: (any Transport)?) {
        self.parameters = parameters
        gradients = FloatBuffer(count: parameters.count)
        optimizer = AdamW(layout: layout, hyper: hyper)
        self.replicas = replicas
    }

    var replicated: Bool { (replicas?.size ?? 1) > 1 }

    /// After a micro-batch's backward into `gradients`: adds them to the step's sum when the step
    /// has several micro-batches (`accumulating`); one alone stays in `gradients`.
    func endMicroBatch(accumulating: Bool) {
        guard accumulating else { return }
        let sum = self.sum ?? GradientSum(count: gradients.count)
        self.sum = sum
        sum.add(gradients)
    }

    /// Sums over the replicas (exactly), clips and applies the step. `accumulated`: the step's
    /// gradient is the sum its micro-batches built; `globalMean`: each term was already divided
    /// by the global count (StepShape.tokens), else the replicas' mean is taken.
    func step(learningRate: Float, maxGradNorm: Float, accumulated: Bool = false, globalMean: Bool = false)
        async throws -> Float
    {
        if accumulated || replicated {
            let sum = self.sum ?? GradientSum(count: gradients.count)
            self.sum = sum
            if !accumulated { sum.add(gradients) }
            if let replicas, replicated { try await replicas.allReduce(sum) }
            sum.write(into: gradients)
            sum.zero()
            if replicated && !globalMean { gradients.scale(by: 1 / Float(replicas?.size ?? 1)) }
        }
        let norm = clipGradientNorm(gradients, maxNorm: maxGradNorm)
        optimizer.update(parameters: parameters, gradients: gradients, learningRate: learningRate)
        return norm
    }
}

/// Policy: the trunk with the policy LoRA (or, without an adapter, a trunk of its own that it
/// fine-tunes fully) and the tied LM head.
public actor LocalPolicy: PolicyRole {
    let trunk: any CausalLM
    let adapter: LoRAAdapter?
    let trainable: Trainable
    let pool: ActivationPool
    /// τ of its log-probs and entropies (the sampling temperature): logits/τ in every pass and in
    /// PPO steps, as TRL's GRPO and OpenRLHF take them; PPO-ptx's likelihood stays at τ = 1.
    let temperature: Float

    /// `pool`: activation buffers shared with a critic whose steps take turns with this policy's.
    public init(
        trunk: any CausalLM, adapter: LoRAAdapter?, hyper: AdamWHyperparameters = .init(),
        replicas: (any Transport)? = nil, pool: ActivationPool = ActivationPool(), temperature: Float = 1
    ) {
        self.temperature = temperature
        self.trunk = trunk
        self.pool = pool
        self.adapter = adapter
        trainable =
            adapter.map { Trainable(parameters: $0.weights, layout: $0.layout, hyper: hyper, replicas: replicas) }
            ?? Trainable(parameters: trunk.weights, layout: trunk.parameterLayout, hyper: hyper, replicas: replicas)
    }

    public func releaseBuffers() { pool.removeAll() }

    public func generate(prompts: [[Int32]], options: SamplingOptions) async throws -> GenerationResult {
        try trunk.generate(prompts: prompts, adapter: adapter, options: options)
    }

    public func logProbs(_ sequences: [[Int32]]) async throws -> [[Float]] {
        try trunk.logProbs(sequences, adapter: adapter, temperature: temperature)
    }

    public func trainStep(
        _ sequences: [[Int32]], objective: PolicyObjective, shape: StepShape, learningRate: Float, maxGradNorm: Float
    ) async throws -> StepStats {
        // A rank with no micro-batch in this step still joins the step's sum over the replicas.
        let parts = sequences.isEmpty ? [] : shape.parts(sequences.count)
        if parts.isEmpty { trainable.gradients.zero() }
        var stats: [StepStats] = []
        for part in parts {
            let slice = parts.count == 1 ? objective : objective.slice(part)
            stats.append(try microBatch(Array(sequences[part]), objective: slice, tokens: shape.tokens))
            trainable.endMicroBatch(accumulating: parts.count > 1)
        }
        var merged = StepStats.merged(stats, summedLosses: shape.tokens > 0)
        merged.gradNorm = try await trainable.step(
            learningRate: learningRate, maxGradNorm: maxGradNorm, accumulated: parts.count > 1,
            globalMean: shape.tokens > 0)
        return merged
    }

    /// One micro-batch's forward and backward: its gradients in `trainable.gradients`; each token's
    /// term divided by `tokens` (0: these sequences' own count).
    func microBatch(_ sequences: [[Int32]], objective: PolicyObjective, tokens: Int) throws -> StepStats {
        let batch = try PaddedBatch(sequences, contextLength: trunk.config.contextLength)
        let rows = try objective.rowsRead(sequences, length: batch.length), all = batch.batch * batch.length
        let act = pool.take(trunk, batch: batch.batch, tokens: batch.length, loraRank: adapter?.config.rank ?? 0)
        defer { pool.giveBack(act) }
        try trunk.forward(tokens: batch.tokens, adapter: adapter, activations: act)
        // The LM head over the rows the objective reads only ([R, V] logits, R ≤ B·T).
        let read = HeadRows(rows, of: act.hidden, channels: trunk.config.channels)
        let head = pool.head(rows: rows.count, vocab: trunk.config.vocabSize)
        let tau: Float = if case .ppo = objective { temperature } else { 1 }
        let logProbs = read.expand(
            trunk.lmHeadLogProbs(
                hidden: read.hidden, targets: rows.map { batch.targets[$0] }, temperature: tau, cache: head),
            count: all)
        var dLogProbs = [Float](repeating: 0, count: all)
        var dEntropy: [Float]? = nil
        var stats = StepStats(loss: 0, gradNorm: 0)
        switch objective {
        case .weightedLogLikelihood(let weights):
            stats.loss = try Self.weightedLogLikelihood(
                weights, sequences: sequences, logProbs: logProbs, length: batch.length, dLogProbs: &dLogProbs)
        case .ppo(let targets):
            let entropies = read.expand(trunk.lmHeadEntropies(cache: head, rows: rows.count), count: all)
            stats = try Self.ppo(
                targets, sequences: sequences, logProbs: logProbs, entropies: entropies, length: batch.length,
                tokens: tokens, dLogProbs: &dLogProbs, dEntropy: &dEntropy)
        }
        trainable.gradients.zero()
        let dRead = FloatBuffer(count: read.hidden.count), dHidden = FloatBuffer(count: act.hidden.count)
        let fullTrunk = adapter == nil ? trainable.gradients : nil
        trunk.lmHeadBackward(
            dLogProbs: read.gather(dLogProbs), hidden: read.hidden, cache: head, dHidden: dRead,
            trunkGradients: fullTrunk, dEntropy: dEntropy.map(read.gather))
        read.scatter(dRead, into: dHidden)
        trunk.backward(
            dHidden: dHidden, adapter: adapter, activations: act, trunkGradients: fullTrunk,
            adapterGradients: adapter == nil ? nil : trainable.gradients)
        return stats
    }

    /// −Σ w·log π over the sequences' tokens (PPO-ptx's demonstrations): the loss, and −w into
    /// `dLogProbs` [B·T] at each weighted position.
    static func weightedLogLikelihood(
        _ weights: [[Float]], sequences: [[Int32]], logProbs: [Float], length: Int, dLogProbs: inout [Float]
    ) throws -> Float {
        try checkWeights(weights, sequences: sequences)
        var loss = 0.0
        for (r, w) in weights.enumerated() {
            for (j, wj) in w.enumerated() {
                dLogProbs[r * length + j] = -wj
                loss -= Double(wj) * Double(logProbs[r * length + j])
            }
        }
        return Float(loss)
    }

    static func checkWeights(_ weights: [[Float]], sequences: [[Int32]]) throws {
        guard weights.count == sequences.count, zip(weights, sequences).allSatisfy({ $0.count == $1.count - 1 }) else {
            throw RoleError("policy train step: weights must align with the log-probs of each sequence (length − 1)")
        }
    }

    /// PPO's clipped surrogate (docs/algorithms.md §2.2) less the entropy bonus over the response
    /// tokens: the statistics, ∂/∂log π into `dLogProbs` and ∂/∂entropy into `dEntropy` [B·T].
    /// Each token's terms are divided by its sequence's divisor (`targets.divisors`), or by the
    /// step's token count; sequences with divisor 0 are left out.
    static func ppo(
        _ targets: PPOTargets, sequences: [[Int32]], logProbs: [Float], entropies: [Float], length: Int, tokens: Int,
        dLogProbs: inout [Float], dEntropy: inout [Float]?
    ) throws -> StepStats {
        let all = try targets.responsePositions(sequences)
        guard targets.divisors.isEmpty || targets.divisors.count == sequences.count else {
            throw RoleError("PPO targets: \(targets.divisors.count) divisors for \(sequences.count) sequences")
        }
        let kept = targets.divisors.isEmpty ? all : all.filter { targets.divisors[$0.row] > 0 }
        guard !all.isEmpty else { throw RoleError("PPO step without response tokens") }
        var stats = StepStats(loss: 0, gradNorm: 0)
        guard !kept.isEmpty else { return stats }  // every sequence left out: no gradient
        let flatOld = kept.map { Double(targets.oldLogProbs[$0.row][$0.position - targets.promptLengths[$0.row] + 1]) }
        let flatAdv = kept.map { Double(targets.advantages[$0.row][$0.position - targets.promptLengths[$0.row] + 1]) }
        let flatNew = kept.map { Double(logProbs[$0.row * length + $0.position]) }
        let n = Double(tokens > 0 ? tokens : all.count)
        let divisors = targets.divisors.isEmpty ? nil : kept.map { Double(targets.divisors[$0.row]) }
        let (clipLow, clipHigh) = (Double(targets.clipLow), Double(targets.clipHigh))
        let dualClip = targets.dualClip > 1 ? Double(targets.dualClip) : nil
        let (loss, grad, clipFraction) =
            targets.sequenceRatio
            ? PPOMath.sequencePolicyLoss(
                logp: flatNew, logpOld: flatOld, advantages: flatAdv, sequences: tokenRanges(kept),
                divisors: divisors ?? Array(repeating: n, count: kept.count), clipLow: clipLow, clipHigh: clipHigh,
                dualClip: dualClip)
            : PPOMath.policyLoss(
                logp: flatNew, logpOld: flatOld, advantages: flatAdv, clipLow: clipLow, clipHigh: clipHigh,
                dualClip: dualClip, normalizer: tokens, divisors: divisors)
        var entropySum = 0.0, entropyShare = 0.0
        if targets.entropyCoefficient != 0 { dEntropy = [Float](repeating: 0, count: logProbs.count) }
        for (k, p) in kept.enumerated() {
            let index = p.row * length + p.position, d = divisors?[k] ?? n
            dLogProbs[index] = Float(grad[k])
            entropySum += Double(entropies[index])
            entropyShare += Double(entropies[index]) / d
            dEntropy?[index] = -targets.entropyCoefficient / Float(d)
        }
        let meanEntropy = entropySum / Double(kept.count)
        // The entropy bonus's share of the step's loss (all of it when these tokens are the step's).
        if divisors == nil { entropyShare = tokens > 0 ? entropySum / Double(tokens) : meanEntropy }
        stats.loss = Float(loss - Double(targets.entropyCoefficient) * entropyShare)
        stats.clipFraction = Float(clipFraction)
        stats.entropy = Float(meanEntropy)
        stats.approxKL = Float(zip(flatOld, flatNew).map { $0 - $1 }.reduce(0, +) / Double(kept.count))
        return stats
    }

    /// The index ranges of each sequence's tokens in `positions` (consecutive per row).
    static func tokenRanges(_ positions: [(row: Int, position: Int)]) -> [Range<Int>] {
        var ranges: [Range<Int>] = [], start = 0
        for k in positions.indices where k == positions.count - 1 || positions[k + 1].row != positions[k].row {
            ranges.append(start..<(k + 1))
            start = k + 1
        }
        return ranges
    }
}

/// Critic: the trunk with the critic LoRA (optional) and a value head; trains head and adapter.
public actor LocalCritic: CriticRole {
    let trunk: any CausalLM
    let adapter: LoRAAdapter?
    let head: ScalarHead
    let headTrainable: Trainable
    let adapterTrainable: Trainable?
    /// `separate` layout: the critic fine-tunes a trunk of its own (no adapter).
    let trunkTrainable: Trainable?
    let pool: ActivationPool

    /// `pool`: activation buffers shared with a policy whose steps take turns with this critic's.
    public init(
        trunk: any CausalLM, adapter: LoRAAdapter?, head: ScalarHead, hyper: AdamWHyperparameters = .init(),
        replicas: (any Transport)? = nil, trainTrunk: Bool = false, pool: ActivationPool = ActivationPool()
    ) {
        self.trunk = trunk
        self.pool = pool
        self.adapter = adapter
        self.head = head
        var layout = TensorLayout()
        layout.add("v_head.summary", [head.channels + 1])
        headTrainable = Trainable(parameters: head.parameters, layout: layout, hyper: hyper, replicas: replicas)
        adapterTrainable = adapter.map {
            Trainable(parameters: $0.weights, layout: $0.layout, hyper: hyper, replicas: replicas)
        }
        trunkTrainable =
            adapter == nil && trainTrunk
            ? Trainable(parameters: trunk.weights, layout: trunk.parameterLayout, hyper: hyper, replicas: replicas)
            : nil
    }

    public func releaseBuffers() { pool.removeAll() }

    func forward(_ sequences: [[Int32]]) throws -> (PaddedBatch, any TrunkActivations, [Float]) {
        let batch = try PaddedBatch(sequences, contextLength: trunk.config.contextLength)
        let act = pool.take(trunk, batch: batch.batch, tokens: batch.length, loraRank: adapter?.config.rank ?? 0)
        do { try trunk.forward(tokens: batch.tokens, adapter: adapter, activations: act) } catch {
            pool.giveBack(act)
            throw error
        }
        return (batch, act, head.forward(hidden: act.hidden.pointer, rows: batch.batch * batch.length))
    }

    /// Values of every token (inference forward, in scoring chunks).
    public func values(_ sequences: [[Int32]]) async throws -> [[Float]] {
        try values(sequences, budget: ScoringChunks.budgetBytes)
    }

    func values(_ sequences: [[Int32]], budget: Double) throws -> [[Float]] {
        try ScoringChunks.map(sequences, config: trunk.config, loraRank: adapter?.config.rank ?? 0, budget: budget) {
            chunk in
            let batch = try PaddedBatch(chunk, contextLength: trunk.config.contextLength)
            let hidden = try trunk.inferenceHidden(
                tokens: batch.tokens, batch: batch.batch, length: batch.length, adapter: adapter)
            let values = withExtendedLifetime(hidden) {
                head.forward(hidden: hidden.pointer, rows: batch.batch * batch.length)
            }
            return chunk.enumerated().map { r, s in Array(values[(r * batch.length)..<(r * batch.length + s.count)]) }
        }
    }

    public func trainStep(
        _ sequences: [[Int32]], objective: CriticObjective, shape: StepShape, learningRate: Float, maxGradNorm: Float
    ) async throws -> StepStats {
        let parts = sequences.isEmpty ? [] : shape.parts(sequences.count)
        let trunkTrainable = adapterTrainable ?? self.trunkTrainable
        if parts.isEmpty { for t in [trunkTrainable, headTrainable] { t?.gradients.zero() } }  // as the policy's
        var losses: [StepStats] = []
        for part in parts {
            let slice = parts.count == 1 ? objective : objective.slice(part)
            losses.append(try microBatch(Array(sequences[part]), objective: slice, tokens: shape.tokens))
            trunkTrainable?.endMicroBatch(accumulating: parts.count > 1)
            headTrainable.endMicroBatch(accumulating: parts.count > 1)
        }
        let (accumulated, globalMean) = (parts.count > 1, shape.tokens > 0)
        let norm =
            try await trunkTrainable?.step(
                learningRate: learningRate, maxGradNorm: maxGradNorm, accumulated: accumulated, globalMean: globalMean)
            ?? 0
        let headNorm = try await headTrainable.step(
            learningRate: learningRate, maxGradNorm: maxGradNorm, accumulated: accumulated, globalMean: globalMean)
        var stats = StepStats.merged(losses, summedLosses: globalMean)
        stats.gradNorm = (norm * norm + headNorm * headNorm).squareRoot()
        return stats
    }

    /// One micro-batch's forward and backward: the gradients of the head and of the adapter (or
    /// trunk) in their `gradients`; each token's term divided by `tokens` (0: these sequences').
    func microBatch(_ sequences: [[Int32]], objective: CriticObjective, tokens: Int) throws -> StepStats {
        let (batch, act, values) = try forward(sequences)
        defer { pool.giveBack(act) }
        var dValues = [Float](repeating: 0, count: values.count)
        var loss = 0.0
        switch objective {
        case .regression(let targets, let weights):
            guard targets.count == sequences.count, weights.count == sequences.count,
                zip(targets, sequences).allSatisfy({ $0.count == $1.count }),
                zip(weights, sequences).allSatisfy({ $0.count == $1.count })
            else {
                throw RoleError("critic train step: targets and weights must have one value per token of each sequence")
            }
            for r in 0..<sequences.count {
                for j in 0..<sequences[r].count {
                    let i = r * batch.length + j, error = values[i] - targets[r][j]
                    loss += Double(weights[r][j]) * Double(error * error)
                    dValues[i] = 2 * weights[r][j] * error
                }
            }
        case .clippedValue(let promptLengths, let oldValues, let returns, let clip):
            loss = try Self.clippedValue(
                promptLengths: promptLengths, oldValues: oldValues, returns: returns, clip: clip, sequences: sequences,
                values: values, length: batch.length, tokens: tokens, dValues: &dValues)
        }
        headTrainable.gradients.zero()
        let dHidden = FloatBuffer(count: act.hidden.count)
        withExtendedLifetime((act, dHidden)) {
            head.backward(
                dValues: dValues, hidden: act.hidden.pointer, dHidden: dHidden.pointer,
                gradients: headTrainable.gradients)
        }
        if let adapterTrainable {
            adapterTrainable.gradients.zero()
            trunk.backward(
                dHidden: dHidden, adapter: adapter, activations: act, trunkGradients: nil,
                adapterGradients: adapterTrainable.gradients)
        } else if let trunkTrainable {
            trunkTrainable.gradients.zero()
            trunk.backward(
                dHidden: dHidden, adapter: nil, activations: act, trunkGradients: trunkTrainable.gradients,
                adapterGradients: nil)
        }
        return StepStats(loss: Float(loss), gradNorm: 0)
    }

    /// PPO's clipped value loss (docs/algorithms.md §2.2) over the response positions: the loss,
    /// ∂/∂V into `dValues` [B·T].
    static func clippedValue(
        promptLengths: [Int], oldValues: [[Float]], returns: [[Float]], clip: Float, sequences: [[Int32]],
        values: [Float],
        length: Int, tokens: Int = 0, dValues: inout [Float]
    ) throws -> Double {
        var indices: [Int] = [], flatNew: [Double] = [], flatOld: [Double] = [], flatReturns: [Double] = []
        for (r, s) in sequences.enumerated() {
            let n = s.count - promptLengths[r]
            guard n >= 0, oldValues[r].count == n, returns[r].count == n else {
                throw RoleError("value targets of sequence \(r) do not match its response")
            }
            for t in 0..<n {
                let i = r * length + promptLengths[r] - 1 + t
                indices.append(i)
                flatNew.append(Double(values[i]))
            }
            flatOld += oldValues[r].map(Double.init)
            flatReturns += returns[r].map(Double.init)
        }
        guard !indices.isEmpty else { throw RoleError("value step without response tokens") }
        let (loss, grad) = PPOMath.valueLoss(
            values: flatNew, oldValues: flatOld, returns: flatReturns, clip: Double(clip), normalizer: tokens)
        for (k, i) in indices.enumerated() { dValues[i] = Float(grad[k]) }
        return loss
    }
}
