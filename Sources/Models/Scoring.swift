import Kernels

extension CausalLM {
    /// Log-likelihood scoring: for each sequence, log p(tokens[i] | tokens[..<i]) for i ≥ 1.
    /// Sequences are right-padded into batches of at most `batchSize`; each must fit the context.
    public func scoreSequences(_ sequences: [[Int32]], adapter: LoRAAdapter? = nil, batchSize: Int = 32) throws
        -> [[Float]]
    {
        for (i, s) in sequences.enumerated() {
            guard s.count >= 1 else { throw ModelError.input("sequence \(i) is empty") }
            guard s.count <= config.contextLength else {
                throw ModelError.input(
                    "sequence \(i) has \(s.count) tokens; the model's context is \(config.contextLength)")
            }
        }
        var results: [[Float]] = []
        results.reserveCapacity(sequences.count)
        var start = 0
        while start < sequences.count {
            let chunk = Array(sequences[start..<min(start + max(batchSize, 1), sequences.count)])
            let b = chunk.count, t = chunk.map(\.count).max()!
            var tokens = [Int32](repeating: 0, count: b * t)
            var targets = [Int32](repeating: -1, count: b * t)
            for (r, s) in chunk.enumerated() {
                for (j, id) in s.enumerated() { tokens[r * t + j] = id }
                for j in 0..<(s.count - 1) { targets[r * t + j] = s[j + 1] }
            }
            let act = makeActivations(batch: b, tokens: t, loraRank: adapter?.config.rank ?? 0)
            try forward(tokens: tokens, adapter: adapter, activations: act)
            let head = LMHeadCache(rows: b * t, vocab: config.vocabSize)
            let logProbs = lmHeadLogProbs(hidden: act.hidden, targets: targets, cache: head)
            for (r, s) in chunk.enumerated() { results.append(Array(logProbs[(r * t)..<(r * t + s.count - 1)])) }
            start += b
        }
        return results
    }

    /// Full logits [T, V] of one sequence (for golden tests and inspection).
    public func logits(of sequence: [Int32], adapter: LoRAAdapter? = nil) throws -> [Float] {
        let act = makeActivations(batch: 1, tokens: sequence.count, loraRank: adapter?.config.rank ?? 0)
        try forward(tokens: sequence, adapter: adapter, activations: act)
        let head = LMHeadCache(rows: sequence.count, vocab: config.vocabSize)
        withExtendedLifetime(act) { lmHeadLogits(hidden: act.hidden.pointer, rows: sequence.count, cache: head) }
        return head.logits.array
    }
}
