import Kernels
import Models

/// The activation and LM-head buffers of the last batch shape, so repeated calls of the same shape
/// (minibatches of equal padded length) reuse memory instead of allocating and zeroing it again.
/// One shape only: minibatches padded to different lengths would otherwise each keep a set (up to
/// the training activations of every shape at once), and the memory plan counts one set per role.
/// Owned by one role actor, so never used concurrently.
final class ActivationPool {
    private var activations: [String: any TrunkActivations] = [:]
    private var heads: [String: LMHeadCache] = [:]
    private let limit = 1

    func activations(_ trunk: any CausalLM, batch: Int, tokens: Int, loraRank: Int) -> any TrunkActivations {
        let key = "\(batch)x\(tokens)r\(loraRank)"
        if let a = activations[key] { return a }
        if activations.count >= limit { activations.removeAll() }
        let a = trunk.makeActivations(batch: batch, tokens: tokens, loraRank: loraRank)
        activations[key] = a
        return a
    }

    func removeAll() {
        activations.removeAll()
        heads.removeAll()
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
    /// Log-probs of tokens[1...] for each sequence (inference forward, in scoring chunks).
    func logProbs(_ sequences: [[Int32]], adapter: LoRAAdapter?, budget: Double = ScoringChunks.budgetBytes) throws
        -> [[Float]]
    {
        try ScoringChunks.map(sequences, config: config, loraRank: adapter?.config.rank ?? 0, budget: budget) {
            try logProbsInOneBatch($0, adapter: adapter)
        }
    }

    func logProbsInOneBatch(_ sequences: [[Int32]], adapter: LoRAAdapter?) throws -> [[Float]] {
        let batch = try PaddedBatch(sequences, contextLength: config.contextLength)
        let hidden = try inferenceHidden(
            tokens: batch.tokens, batch: batch.batch, length: batch.length, adapter: adapter)
        let all = lmHeadLogProbs(
            hidden: hidden, targets: batch.targets,
            cache: LMHeadCache(rows: batch.batch * batch.length, vocab: config.vocabSize))
        return sequences.enumerated().map { r, s in Array(all[(r * batch.length)..<(r * batch.length + s.count - 1)]) }
    }

    /// Final hidden state at each sequence's last token [N, C] (inference forward, in scoring chunks).
    public func lastHidden(_ sequences: [[Int32]]) throws -> FloatBuffer {
        try lastHidden(sequences, budget: ScoringChunks.budgetBytes)
    }

    func lastHidden(_ sequences: [[Int32]], budget: Double) throws -> FloatBuffer {
        let c = config.channels
        let last = FloatBuffer(count: max(sequences.count, 1) * c)
        var row = 0
        _ = try ScoringChunks.map(sequences, config: config, loraRank: 0, budget: budget) { chunk -> [Void] in
            let batch = try PaddedBatch(chunk, contextLength: config.contextLength)
            let hidden = try inferenceHidden(tokens: batch.tokens, batch: batch.batch, length: batch.length)
            for (r, s) in chunk.enumerated() {
                (last.pointer + (row + r) * c).update(
                    from: hidden.pointer + (r * batch.length + s.count - 1) * c, count: c)
            }
            row += chunk.count
            return []
        }
        return last
    }
}
