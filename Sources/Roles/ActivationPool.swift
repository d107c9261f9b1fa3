import Foundation
import Kernels
import Models

/// The activation and LM-head buffers of the last batch shape, so repeated calls of the same shape
/// (minibatches of equal padded length) reuse memory instead of allocating and zeroing it again.
/// One shape only: minibatches padded to different lengths would otherwise each keep a set (up to
/// the training activations of every shape at once). PPO's policy and critic share one pool: their
/// steps take turns, so one activation set serves both (the memory plan counts it once). A set is
/// taken for a step and given back after it; a second taker meanwhile gets a set of its own, so
/// concurrent steps never share buffers.
public final class ActivationPool: @unchecked Sendable {
    private let lock = NSLock()
    private var idle: (key: String, activations: any TrunkActivations)?
    private var head: LMHeadCache?

    public init() {}

    /// An activation set of this shape for one step: the idle one if it fits, else a new one.
    func take(_ trunk: any CausalLM, batch: Int, tokens: Int, loraRank: Int) -> any TrunkActivations {
        let key = "\(batch)x\(tokens)r\(loraRank)"
        return lock.withLock {
            if let idle, idle.key == key {
                self.idle = nil
                return idle.activations
            }
            idle = nil  // another shape: let it go before the new set is allocated
            return nil
        } ?? trunk.makeActivations(batch: batch, tokens: tokens, loraRank: loraRank)
    }

    /// Returns a set taken by `take` once its step is done with it.
    func giveBack(_ activations: any TrunkActivations) {
        let key = "\(activations.batch)x\(activations.tokens)r\(activations.loraRank)"
        lock.withLock { idle = (key, activations) }
    }

    func removeAll() {
        lock.withLock {
            idle = nil
            head = nil
        }
    }

    /// An LM-head cache of at least `rows` rows: the kept one when it is large enough (the rows a
    /// step reads vary with its response lengths), else a new one of `rows`.
    func head(rows: Int, vocab: Int) -> LMHeadCache {
        lock.withLock {
            if let head, head.vocab == vocab, head.rows >= rows { return head }
            head = nil  // let the smaller one go before the larger is allocated
            let made = LMHeadCache(rows: rows, vocab: vocab)
            head = made
            return made
        }
    }
}

extension CausalLM {
    /// Log-probs of tokens[1...] on logits/τ for each sequence (inference forward, in scoring chunks).
    func logProbs(
        _ sequences: [[Int32]], adapter: LoRAAdapter?, temperature: Float = 1,
        budget: Double = ScoringChunks.budgetBytes
    ) throws -> [[Float]] {
        try ScoringChunks.map(sequences, config: config, loraRank: adapter?.config.rank ?? 0, budget: budget) {
            try logProbsInOneBatch($0, adapter: adapter, temperature: temperature)
        }
    }

    func logProbsInOneBatch(_ sequences: [[Int32]], adapter: LoRAAdapter?, temperature: Float = 1) throws -> [[Float]] {
        let batch = try PaddedBatch(sequences, contextLength: config.contextLength)
        let hidden = try inferenceHidden(
            tokens: batch.tokens, batch: batch.batch, length: batch.length, adapter: adapter)
        // The LM head over the sequences' own positions, not the padding.
        return HeadRows(targetsOf: sequences, length: batch.length, of: hidden, channels: config.channels)
            .logProbs(self, sequences: sequences, targets: batch.targets, temperature: temperature)
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
