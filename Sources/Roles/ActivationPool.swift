import Kernels
import Models

/// Activation and LM-head buffers kept per batch shape, so repeated calls of the same shape (the
/// minibatches of every PPO iteration) reuse memory instead of allocating and zeroing it again.
/// Owned by one role actor, so never used concurrently.
final class ActivationPool {
    private var activations: [String: any TrunkActivations] = [:]
    private var heads: [String: LMHeadCache] = [:]
    private let limit = 16

    func activations(_ trunk: any CausalLM, batch: Int, tokens: Int, loraRank: Int) -> any TrunkActivations {
        let key = "\(batch)x\(tokens)r\(loraRank)"
        if let a = activations[key] { return a }
        if activations.count >= limit { activations.removeAll() }
        let a = trunk.makeActivations(batch: batch, tokens: tokens, loraRank: loraRank)
        activations[key] = a
        return a
    }

    func head(rows: Int, vocab: Int) -> LMHeadCache {
        let key = "\(rows)x\(vocab)"
        if let h = heads[key] { return h }
        if heads.count >= limit { heads.removeAll() }
        let h = LMHeadCache(rows: rows, vocab: vocab)
        heads[key] = h
        return h
    }
}

extension CausalLM {
    /// Log-probs of tokens[1...] for each sequence in one padded batch (inference forward).
    func logProbs(_ sequences: [[Int32]], adapter: LoRAAdapter?) throws -> [[Float]] {
        let batch = try PaddedBatch(sequences, contextLength: config.contextLength)
        let hidden = try inferenceHidden(tokens: batch.tokens, batch: batch.batch, length: batch.length, adapter: adapter)
        let all = lmHeadLogProbs(hidden: hidden, targets: batch.targets, cache: LMHeadCache(rows: batch.batch * batch.length, vocab: config.vocabSize))
        return sequences.enumerated().map { r, s in Array(all[(r * batch.length)..<(r * batch.length + s.count - 1)]) }
    }

    /// Final hidden state at each sequence's last token [N, C] (inference forward).
    public func lastHidden(_ sequences: [[Int32]]) throws -> FloatBuffer {
        let batch = try PaddedBatch(sequences, contextLength: config.contextLength)
        let hidden = try inferenceHidden(tokens: batch.tokens, batch: batch.batch, length: batch.length)
        let c = config.channels
        let last = FloatBuffer(count: sequences.count * c)
        for (r, s) in sequences.enumerated() { (last.pointer + r * c).update(from: hidden.pointer + (r * batch.length + s.count - 1) * c, count: c) }
        return last
    }
}
