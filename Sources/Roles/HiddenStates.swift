import Foundation
import Kernels
import Models

/// Final hidden states alongside log-probs, for reward models that read them: R2M (the policy's
/// states on the response) and LASeR's bandit context (the policy's states on the prompt).
extension LocalPolicy {
    /// Log-probs of tokens[1...] and the final hidden states [len, C] of each sequence (inference forward).
    public func logProbsAndHidden(_ sequences: [[Int32]]) throws -> (logProbs: [[Float]], hidden: [[Float]]) {
        try trunk.logProbsAndHidden(sequences, adapter: adapter)
    }
}

extension HydraScorer {
    /// Reference log-probs, last-token hidden states [C] per sequence, from one adapters-off pass.
    public func referenceAndLastHidden(_ sequences: [[Int32]]) throws -> (logProbs: [[Float]], lastHidden: [[Float]]) {
        let (logProbs, hidden) = try trunk.logProbsAndHidden(sequences, adapter: nil)
        let c = trunk.config.channels
        return (logProbs, zip(sequences, hidden).map { s, h in Array(h[((s.count - 1) * c)..<(s.count * c)]) })
    }
}

extension GPT2Trunk {
    func logProbsAndHidden(_ sequences: [[Int32]], adapter: LoRAAdapter?) throws -> (logProbs: [[Float]], hidden: [[Float]]) {
        let batch = try PaddedBatch(sequences, contextLength: config.contextLength)
        let hidden = try inferenceHidden(tokens: batch.tokens, batch: batch.batch, length: batch.length, adapter: adapter)
        let all = lmHeadLogProbs(hidden: hidden, targets: batch.targets, cache: LMHeadCache(rows: batch.batch * batch.length, vocab: config.vocabSize))
        let c = config.channels
        let states = sequences.enumerated().map { r, s in Array(UnsafeBufferPointer(start: hidden.pointer + r * batch.length * c, count: s.count * c)) }
        return (sequences.enumerated().map { r, s in Array(all[(r * batch.length)..<(r * batch.length + s.count - 1)]) }, withExtendedLifetime(hidden) { states })
    }
}
