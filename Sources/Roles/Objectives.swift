import Alignment
import Foundation

/// What a policy train step minimises. Serialisable, so a remote policy trains the same way.
public enum PolicyObjective: Sendable, Equatable {
    /// −Σ weights · log-probs, weights aligned with `logProbs` (SFT, plain policy gradient).
    case weightedLogLikelihood(weights: [[Float]])
    /// PPO's clipped surrogate on the response tokens (docs/algorithms.md §2.2), token-level mean over
    /// the batch, minus entropyCoefficient × mean entropy.
    case ppo(PPOTargets)
}

/// Response tokens of sequence i are tokens[promptLengths[i]...]; their log-probs sit at
/// log-prob positions promptLengths[i] − 1 ..< count − 1, and so do their values.
public struct PPOTargets: Sendable, Equatable {
    public var promptLengths: [Int]
    public var oldLogProbs: [[Float]]
    public var advantages: [[Float]]
    public var clipLow: Float, clipHigh: Float
    public var dualClip: Float  // 0: off
    public var entropyCoefficient: Float
    /// Per sequence, what its tokens' terms are divided by (`LossAggregation.divisor`), 0 for a
    /// sequence left out of the loss (DAPO's overlong filter); empty: the token mean over the
    /// step's `StepShape.tokens`.
    public var divisors: [Int] = []
    /// GSPO: one importance ratio per sequence (the geometric mean of its tokens').
    public var sequenceRatio = false

    public init(
        promptLengths: [Int], oldLogProbs: [[Float]], advantages: [[Float]], clipLow: Float = 0.2,
        clipHigh: Float = 0.2,
        dualClip: Float = 0, entropyCoefficient: Float = 0, divisors: [Int] = [], sequenceRatio: Bool = false
    ) {
        self.promptLengths = promptLengths
        self.oldLogProbs = oldLogProbs
        self.advantages = advantages
        self.clipLow = clipLow
        self.clipHigh = clipHigh
        self.dualClip = dualClip
        self.entropyCoefficient = entropyCoefficient
        self.divisors = divisors
        self.sequenceRatio = sequenceRatio
    }
}

public enum CriticObjective: Sendable, Equatable {
    /// Σ weights · (value − target)² over every position.
    case regression(targets: [[Float]], weights: [[Float]])
    /// PPO's clipped value loss on the response positions, token-level mean.
    case clippedValue(promptLengths: [Int], oldValues: [[Float]], returns: [[Float]], clip: Float)
}

public struct StepStats: Sendable, Equatable {
    public var loss: Float
    public var gradNorm: Float
    public var clipFraction: Float = 0
    public var entropy: Float = 0
    /// mean over response tokens of logp_old − logp (how far this step's policy moved).
    public var approxKL: Float = 0
    public init(loss: Float, gradNorm: Float, clipFraction: Float = 0, entropy: Float = 0, approxKL: Float = 0) {
        self.loss = loss
        self.gradNorm = gradNorm
        self.clipFraction = clipFraction
        self.entropy = entropy
        self.approxKL = approxKL
    }
}

extension PPOTargets {
    /// The (row, position) of every response token, in batch order.
    func responsePositions(_ sequences: [[Int32]]) throws -> [(row: Int, position: Int)] {
        guard promptLengths.count == sequences.count, oldLogProbs.count == sequences.count,
            advantages.count == sequences.count
        else {
            throw RoleError("PPO targets do not cover the batch")
        }
        var out: [(Int, Int)] = []
        for (i, s) in sequences.enumerated() {
            let n = s.count - promptLengths[i]
            guard promptLengths[i] >= 1, n >= 0, oldLogProbs[i].count == n, advantages[i].count == n else {
                throw RoleError("PPO targets of sequence \(i) do not match its \(n) response tokens")
            }
            for t in 0..<n { out.append((i, promptLengths[i] - 1 + t)) }
        }
        return out
    }
}

/// How a train step goes over its sequences: in micro-batches of `microBatch` (0: one pass over
/// them all), their gradients summed in Float64, each token's term divided by `tokens` (0: the
/// mean over these sequences' response tokens). When ranks share a step, `tokens` is the global
/// minibatch's count and every rank's gradients are summed exactly, so the step does not depend
/// on how its micro-batches are spread over ranks (docs/architecture.md §8).
public struct StepShape: Sendable, Equatable {
    public var microBatch: Int
    public var tokens: Int
    public init(microBatch: Int = 0, tokens: Int = 0) {
        self.microBatch = microBatch
        self.tokens = tokens
    }
    public static let whole = StepShape()

    /// The micro-batches of `count` sequences, in order.
    func parts(_ count: Int) -> [Range<Int>] {
        guard microBatch > 0, microBatch < count else { return [0..<count] }
        return stride(from: 0, to: count, by: microBatch).map { $0..<min($0 + microBatch, count) }
    }
}

extension PolicyObjective {
    /// The objective of sequences `part` of the batch.
    func slice(_ part: Range<Int>) -> PolicyObjective {
        switch self {
        case .weightedLogLikelihood(let weights): return .weightedLogLikelihood(weights: Array(weights[part]))
        case .ppo(var t):
            (t.promptLengths, t.oldLogProbs, t.advantages) = (
                Array(t.promptLengths[part]), Array(t.oldLogProbs[part]), Array(t.advantages[part])
            )
            if !t.divisors.isEmpty { t.divisors = Array(t.divisors[part]) }
            return .ppo(t)
        }
    }
}

extension CriticObjective {
    /// The objective of sequences `part` of the batch.
    func slice(_ part: Range<Int>) -> CriticObjective {
        switch self {
        case .regression(let targets, let weights):
            return .regression(targets: Array(targets[part]), weights: Array(weights[part]))
        case .clippedValue(let lengths, let old, let returns, let clip):
            return .clippedValue(
                promptLengths: Array(lengths[part]), oldValues: Array(old[part]), returns: Array(returns[part]),
                clip: clip)
        }
    }
}

extension StepStats {
    /// One step's figures from its micro-batches': losses added when each is a share of one token
    /// mean (`summedLosses`), else averaged; the other figures averaged.
    static func merged(_ parts: [StepStats], summedLosses: Bool) -> StepStats {
        guard parts.count > 1 else { return parts.first ?? StepStats(loss: 0, gradNorm: 0) }
        let n = Float(parts.count), loss = parts.map(\.loss).reduce(0, +)
        return StepStats(
            loss: summedLosses ? loss : loss / n, gradNorm: 0, clipFraction: parts.map(\.clipFraction).reduce(0, +) / n,
            entropy: parts.map(\.entropy).reduce(0, +) / n, approxKL: parts.map(\.approxKL).reduce(0, +) / n)
    }
}
