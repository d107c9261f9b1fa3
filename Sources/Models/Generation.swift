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
        self.tokens = tokens
        self.logProbs = logProbs
        self.hiddenStates = hiddenStates
        self.endedWithEOS = endedWithEOS
    }
}

extension CausalLM {
    /// Batched incremental decoding with a KV cache. Prompts may differ in length; each sequence
    /// stops at `eosTokenId`, after `maxNewTokens`, or when the context is full.
    public func generate(
        prompts: [[Int32]], adapter: LoRAAdapter? = nil, options o: SamplingOptions,
        returnHiddenStates: Bool = false
    ) throws -> GenerationResult {
        try o.validate()
        let b = prompts.count, C = config.channels, V = config.vocabSize
        guard b > 0 else {
            return GenerationResult(
                tokens: [], logProbs: [], hiddenStates: returnHiddenStates ? [] : nil, endedWithEOS: [])
        }
        try checkPrompts(prompts)
        let longest = prompts.map(\.count).max()!
        let decoder = makeDecoder(
            batch: b, capacity: min(config.contextLength, longest + o.maxNewTokens), loraRank: adapter?.config.rank ?? 0
        )
        var hidden = try decoder.prefill(prompts: prompts, adapter: adapter)
        let head = LMHeadCache(rows: b, vocab: V)
        var rng = RNG(seed: o.seed)
        var result = GenerationResult(
            tokens: Array(repeating: [], count: b), logProbs: Array(repeating: [], count: b),
            hiddenStates: returnHiddenStates ? Array(repeating: [], count: b) : nil,
            endedWithEOS: Array(repeating: false, count: b))
        // The sequences still decoding, ascending; row r of `hidden` belongs to live[r]. Finished
        // sequences leave the batch, so later steps cost only what is still running.
        BLAS.$fewRowProducts.withValue(true) {  // a few rows per step: weights read once (SkinnyGEMM)
            var live = o.maxNewTokens > 0 ? Array(0..<b) : []
            while !live.isEmpty {
                lmHeadLogits(hidden: hidden.pointer, rows: live.count, cache: head)
                var still: [Int] = [], next: [Int32] = []
                for (r, i) in live.enumerated() {
                    let (token, logProb) = sampleToken(
                        logits: head.logits.pointer + r * V, vocab: V, options: o,
                        rng: &rng, scratch: head.scratch.pointer)
                    result.tokens[i].append(token)
                    result.logProbs[i].append(logProb)
                    if returnHiddenStates {
                        result.hiddenStates![i].append(
                            contentsOf: UnsafeBufferPointer(start: hidden.pointer + r * C, count: C))
                    }
                    if o.ends(with: token) {
                        result.endedWithEOS[i] = true
                    }
                    // Stop when prompt + new tokens fill the context, so the whole sequence can be scored again.
                    else if result.tokens[i].count < o.maxNewTokens && decoder.lengths[i] + 1 < config.contextLength {
                        still.append(i)
                        next.append(token)
                    }
                }
                live = still
                guard !live.isEmpty else { break }
                hidden = decoder.step(tokens: next, sequences: live, adapter: adapter)
            }
        }
        return result
    }

    /// Consecutive groups of `count` prompts padded to `length` tokens for the prefill.
    public func prefillGroups(count: Int, length: Int, loraRank: Int) -> [Range<Int>] {
        let per = PrefillGroups.prompts(config, length: length, loraRank: loraRank)
        return stride(from: 0, to: count, by: per).map { $0..<min($0 + per, count) }
    }

    /// Every prompt has a token and leaves room in the context for one more.
    func checkPrompts(_ prompts: [[Int32]]) throws {
        for (i, p) in prompts.enumerated() {
            guard !p.isEmpty else { throw ModelError.input("generate: prompt \(i) is empty") }
            guard p.count < config.contextLength else {
                throw ModelError.input(
                    "generate: prompt \(i) has \(p.count) tokens; the context holds \(config.contextLength) and one "
                        + "is needed for a new token")
            }
        }
    }
}

/// The prefill runs over groups of prompts whose inference buffers stay within a budget, so a large
/// rollout's prefill does not add an activation set of every prompt to its KV cache.
public enum PrefillGroups {
    /// 64 MiB (a task-local so tests can make every prompt a group of its own).
    @TaskLocal public static var budgetBytes = 64.0 * 1_048_576

    /// Prompts of `length` tokens per prefill forward (at least one).
    public static func prompts(_ c: any ModelConfiguration, length: Int, loraRank: Int) -> Int {
        max(1, Int(budgetBytes / max(c.inferenceActivationBytes(batch: 1, tokens: length, loraRank: loraRank), 1)))
    }
}
