import Kernels

/// What `generate` returns, per sequence: only the new tokens.
public struct GenerationResult: Sendable {
    public var tokens: [[Int32]]
    /// log p(token) under softmax(logits/τ) (τ = 1 when greedy), aligned with `tokens`.
    public var logProbs: [[Float]]
    /// If requested: for each new token, the final-LayerNorm hidden state [C] from which its
    /// distribution was computed (the state at the position before it), flattened [A·C].
    public var hiddenStates: [[Float]]?
    /// true if the sequence ended with the EOS id, false if it hit max new tokens or the context.
    public var endedWithEOS: [Bool]

    public init(tokens: [[Int32]], logProbs: [[Float]], hiddenStates: [[Float]]?, endedWithEOS: [Bool]) {
        self.tokens = tokens; self.logProbs = logProbs; self.hiddenStates = hiddenStates; self.endedWithEOS = endedWithEOS
    }
}

extension CausalLM {
    /// Batched incremental decoding with a KV cache. Prompts may differ in length; each sequence
    /// stops at `eosTokenId`, after `maxNewTokens`, or when the context is full.
    public func generate(prompts: [[Int32]], adapter: LoRAAdapter? = nil, options o: SamplingOptions,
                         returnHiddenStates: Bool = false) throws -> GenerationResult {
        try o.validate()
        let b = prompts.count, C = config.channels, V = config.vocabSize
        guard b > 0 else { return GenerationResult(tokens: [], logProbs: [], hiddenStates: returnHiddenStates ? [] : nil, endedWithEOS: []) }
        for (i, p) in prompts.enumerated() {
            guard !p.isEmpty else { throw ModelError.input("generate: prompt \(i) is empty") }
            guard p.count < config.contextLength else {
                throw ModelError.input("generate: prompt \(i) has \(p.count) tokens; the context holds \(config.contextLength) and one is needed for a new token")
            }
        }
        let longest = prompts.map(\.count).max()!
        let decoder = makeDecoder(batch: b, capacity: min(config.contextLength, longest + o.maxNewTokens), loraRank: adapter?.config.rank ?? 0)
        var hidden = try decoder.prefill(prompts: prompts, adapter: adapter)
        let head = LMHeadCache(rows: b, vocab: V)
        var rng = RNG(seed: o.seed)
        var result = GenerationResult(tokens: Array(repeating: [], count: b), logProbs: Array(repeating: [], count: b),
                                      hiddenStates: returnHiddenStates ? Array(repeating: [], count: b) : nil,
                                      endedWithEOS: Array(repeating: false, count: b))
        var active = Array(repeating: o.maxNewTokens > 0, count: b)
        var next = [Int32](repeating: 0, count: b)
        while active.contains(true) {
            lmHeadLogits(hidden: hidden.pointer, rows: b, cache: head)
            for i in 0..<b where active[i] {
                let (token, logProb) = sampleToken(logits: head.logits.pointer + i * V, vocab: V, options: o,
                                                   rng: &rng, scratch: head.scratch.pointer)
                next[i] = token
                result.tokens[i].append(token)
                result.logProbs[i].append(logProb)
                if returnHiddenStates {
                    result.hiddenStates![i].append(contentsOf: UnsafeBufferPointer(start: hidden.pointer + i * C, count: C))
                }
                if token == o.eosTokenId { result.endedWithEOS[i] = true; active[i] = false }
                // Stop when prompt + new tokens fill the context, so the whole sequence can be scored again.
                else if result.tokens[i].count >= o.maxNewTokens || decoder.lengths[i] + 1 >= config.contextLength { active[i] = false }
            }
            guard active.contains(true) else { break }
            // Finished rows still run (their state is ignored), keeping one dense [B, C] batch;
            // they are pinned to a valid position so their cache writes stay in bounds.
            for i in 0..<b where !active[i] { decoder.lengths[i] = min(decoder.lengths[i], decoder.capacity - 1); next[i] = 0 }
            hidden = decoder.step(tokens: next, adapter: adapter)
        }
        return result
    }
}
