import Foundation
import Kernels
import Models

/// Reference and reward from ONE adapters-off pass (docs/architecture.md §3, docs/algorithms.md §1.4): the frozen
/// trunk's hidden states feed both the tied LM head (reference log-probs) and the reward head
/// (score at the last token). Also serves as either role on its own.
public actor HydraScorer: ReferenceRole, RewardRole {
    let trunk: any CausalLM
    let rewardHead: ScalarHead
    /// τ of the reference log-probs: the policy's sampling temperature (TRL divides the reference's
    /// logits by it too, so that the KL compares the same distributions).
    let temperature: Float
    public init(trunk: any CausalLM, rewardHead: ScalarHead, temperature: Float = 1) {
        self.trunk = trunk
        self.rewardHead = rewardHead
        self.temperature = temperature
    }

    /// Reference log-probs (of tokens[1...]) and last-token scores of every sequence.
    public func referenceAndScores(_ sequences: [[Int32]]) throws -> (logProbs: [[Float]], scores: [Float]) {
        try referenceAndScores(sequences, budget: ScoringChunks.budgetBytes)
    }

    func referenceAndScores(_ sequences: [[Int32]], budget: Double) throws -> (logProbs: [[Float]], scores: [Float]) {
        let rows = try ScoringChunks.map(sequences, config: trunk.config, loraRank: 0, budget: budget) { chunk in
            let (logProbs, scores) = try referenceAndScoresInOneBatch(chunk)
            return Array(zip(logProbs, scores))
        }
        return (rows.map(\.0), rows.map(\.1))
    }

    func referenceAndScoresInOneBatch(_ sequences: [[Int32]]) throws -> (logProbs: [[Float]], scores: [Float]) {
        let batch = try PaddedBatch(sequences, contextLength: trunk.config.contextLength)
        let hidden = try trunk.inferenceHidden(tokens: batch.tokens, batch: batch.batch, length: batch.length)
        let c = trunk.config.channels
        // The LM head over the sequences' own positions, not the padding.
        let logProbs = HeadRows(targetsOf: sequences, length: batch.length, of: hidden, channels: c)
            .logProbs(trunk, sequences: sequences, targets: batch.targets, temperature: temperature)
        let last = FloatBuffer(count: sequences.count * c)
        for (r, s) in sequences.enumerated() {
            (last.pointer + r * c).update(from: hidden.pointer + (r * batch.length + s.count - 1) * c, count: c)
        }
        return (
            logProbs, withExtendedLifetime(last) { rewardHead.forward(hidden: last.pointer, rows: sequences.count) }
        )
    }

    public func logProbs(_ sequences: [[Int32]]) async throws -> [[Float]] {
        try referenceAndScores(sequences).logProbs
    }
    public func scores(_ sequences: [[Int32]]) async throws -> [Float] { try referenceAndScores(sequences).scores }
}
