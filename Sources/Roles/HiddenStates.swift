import Foundation
import Kernels
import Models

/// Final hidden states alongside log-probs, for reward models that read them: R2M (the policy's
/// states on the response) and LASeR's bandit context (the policy's states on the prompt).
extension LocalPolicy {
    /// Log-probs of tokens[1...] and the final hidden states [len, C] of each sequence (inference forward).
    public func logProbsAndHidden(_ sequences: [[Int32]]) throws -> (logProbs: [[Float]], hidden: [[Float]]) {
        try trunk.logProbsAndHidden(sequences, adapter: adapter, temperature: temperature)
    }
}

extension HydraScorer {
    /// Reference log-probs, last-token hidden states [C] per sequence, from one adapters-off pass.
    public func referenceAndLastHidden(_ sequences: [[Int32]]) throws -> (logProbs: [[Float]], lastHidden: [[Float]]) {
        let (logProbs, last) = try trunk.logProbsAndHidden(
            sequences, adapter: nil, lastOnly: true, temperature: temperature)
        return (logProbs, last)
    }
}

extension CausalLM {
    /// The final hidden state [C] at each sequence's last token (inference forward).
    public func lastHiddenStates(_ sequences: [[Int32]]) throws -> [[Float]] {
        let last = try lastHidden(sequences), c = config.channels
        return withExtendedLifetime(last) {
            (0..<sequences.count).map { Array(UnsafeBufferPointer(start: last.pointer + $0 * c, count: c)) }
        }
    }

    /// One inference pass: log-probs of tokens[1...] and each sequence's final states — all of
    /// them [len, C], or only the last token's [C].
    func logProbsAndHidden(
        _ sequences: [[Int32]], adapter: LoRAAdapter?, lastOnly: Bool = false, temperature: Float = 1,
        budget: Double = ScoringChunks.budgetBytes
    ) throws -> (logProbs: [[Float]], hidden: [[Float]]) {
        let rows = try ScoringChunks.map(sequences, config: config, loraRank: adapter?.config.rank ?? 0, budget: budget)
        { chunk in
            let (logProbs, hidden) = try logProbsAndHiddenInOneBatch(
                chunk, adapter: adapter, lastOnly: lastOnly, temperature: temperature)
            return Array(zip(logProbs, hidden))
        }
        return (rows.map(\.0), rows.map(\.1))
    }

    func logProbsAndHiddenInOneBatch(
        _ sequences: [[Int32]], adapter: LoRAAdapter?, lastOnly: Bool, temperature: Float = 1
    ) throws -> (logProbs: [[Float]], hidden: [[Float]]) {
        let batch = try PaddedBatch(sequences, contextLength: config.contextLength)
        let hidden = try inferenceHidden(
            tokens: batch.tokens, batch: batch.batch, length: batch.length, adapter: adapter)
        let all = lmHeadLogProbs(
            hidden: hidden, targets: batch.targets, temperature: temperature,
            cache: LMHeadCache(rows: batch.batch * batch.length, vocab: config.vocabSize))
        let c = config.channels
        let states = withExtendedLifetime(hidden) {
            sequences.enumerated().map { r, s in
                let first = lastOnly ? r * batch.length + s.count - 1 : r * batch.length
                return Array(
                    UnsafeBufferPointer(start: hidden.pointer + first * c, count: (lastOnly ? 1 : s.count) * c))
            }
        }
        return (
            sequences.enumerated().map { r, s in Array(all[(r * batch.length)..<(r * batch.length + s.count - 1)]) },
            states
        )
    }
}
