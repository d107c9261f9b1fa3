import Kernels

/// Keys and values of every layer for a batch of sequences, each with its own length.
/// Shapes: keys, values [L, B, capacity, C] (head h at columns h·d ..< (h+1)·d).
public final class KVCache: @unchecked Sendable {
    public let config: GPT2Config
    public let batch: Int, capacity: Int
    let keys: FloatBuffer, values: FloatBuffer
    /// Tokens already in the cache per sequence = the position of its next token.
    public internal(set) var lengths: [Int]

    public init(config: GPT2Config, batch: Int, capacity: Int) {
        self.config = config; self.batch = batch; self.capacity = min(capacity, config.contextLength)
        keys = FloatBuffer(count: config.layers * batch * self.capacity * config.channels)
        values = FloatBuffer(count: config.layers * batch * self.capacity * config.channels)
        lengths = Array(repeating: 0, count: batch)
    }

    func keys(layer l: Int, sequence b: Int) -> UnsafeMutablePointer<Float> {
        keys.pointer + ((l * batch + b) * capacity) * config.channels
    }
    func values(layer l: Int, sequence b: Int) -> UnsafeMutablePointer<Float> {
        values.pointer + ((l * batch + b) * capacity) * config.channels
    }
}

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

/// Per-step buffers of the decode loop, M = B rows (one new token per sequence).
final class DecodeScratch {
    let residual: FloatBuffer, ln1, ln1Mean, ln1Rstd, qkv, attention, residual2, ln2, ln2Mean, ln2Rstd, fc, gelu, residual3: FloatBuffer
    let hidden, lnfMean, lnfRstd, loraU, scores: FloatBuffer
    init(config c: GPT2Config, rows m: Int, capacity: Int, loraRank: Int) {
        let C = c.channels, I = c.innerSize
        residual = FloatBuffer(count: m * C)
        ln1 = FloatBuffer(count: m * C); ln1Mean = FloatBuffer(count: m); ln1Rstd = FloatBuffer(count: m)
        qkv = FloatBuffer(count: m * 3 * C); attention = FloatBuffer(count: m * C); residual2 = FloatBuffer(count: m * C)
        ln2 = FloatBuffer(count: m * C); ln2Mean = FloatBuffer(count: m); ln2Rstd = FloatBuffer(count: m)
        fc = FloatBuffer(count: m * I); gelu = FloatBuffer(count: m * I); residual3 = FloatBuffer(count: m * C)
        hidden = FloatBuffer(count: m * C); lnfMean = FloatBuffer(count: m); lnfRstd = FloatBuffer(count: m)
        loraU = FloatBuffer(count: LoRATarget.allCases.count * m * max(loraRank, 1))
        scores = FloatBuffer(count: capacity)
    }
    var blockBuffers: BlockBuffers {
        BlockBuffers(ln1: ln1.pointer, ln1Mean: ln1Mean.pointer, ln1Rstd: ln1Rstd.pointer, qkv: qkv.pointer,
                     attention: attention.pointer, residual2: residual2.pointer, ln2: ln2.pointer,
                     ln2Mean: ln2Mean.pointer, ln2Rstd: ln2Rstd.pointer, fc: fc.pointer, gelu: gelu.pointer,
                     residual3: residual3.pointer)
    }
}

extension GPT2Trunk {
    /// Fills `cache` with the prompts (right-padded into one [B, Tp] forward) and returns the
    /// final hidden states [B, C] at each prompt's last token.
    func prefill(prompts: [[Int32]], adapter: LoRAAdapter?, cache: KVCache) throws -> FloatBuffer {
        let b = prompts.count, C = config.channels
        let tp = prompts.map(\.count).max() ?? 0
        var flat = [Int32](repeating: 0, count: b * tp)
        for (i, p) in prompts.enumerated() { for (j, id) in p.enumerated() { flat[i * tp + j] = id } }
        let act = TrunkActivations(config: config, batch: b, tokens: tp, loraRank: adapter?.config.rank ?? 0)
        try forward(tokens: flat, adapter: adapter, activations: act)
        for l in 0..<config.layers {
            for s in 0..<b {
                for t in 0..<prompts[s].count {
                    let row = act.qkv.pointer + (l * b * tp + s * tp + t) * 3 * C
                    (cache.keys(layer: l, sequence: s) + t * C).update(from: row + C, count: C)
                    (cache.values(layer: l, sequence: s) + t * C).update(from: row + 2 * C, count: C)
                }
            }
        }
        cache.lengths = prompts.map(\.count)
        let last = FloatBuffer(count: b * C)
        for s in 0..<b { (last.pointer + s * C).update(from: act.hidden.pointer + (s * tp + prompts[s].count - 1) * C, count: C) }
        return last
    }

    /// Feeds one token per sequence at position cache.lengths[s], appends its key and value and
    /// writes the final hidden states [B, C] into scratch.hidden.
    func decodeStep(tokens: [Int32], adapter: LoRAAdapter?, cache: KVCache, scratch s: DecodeScratch) {
        let b = cache.batch, C = config.channels, d = config.headSize, H = config.heads
        let wte = pointer(layout.tokenEmbedding), wpe = pointer(layout.positionEmbedding)
        for i in 0..<b {
            vectorAdd(s.residual.pointer + i * C, wte + Int(tokens[i]) * C, wpe + cache.lengths[i] * C, C)
        }
        let rank = adapter?.config.rank ?? 0
        let scale = 1 / Float(d).squareRoot()
        var input = UnsafePointer(s.residual.pointer)
        for l in 0..<config.layers {
            let buffers = s.blockBuffers
            blockForward(layer: l, input: input, rows: b, buffers: buffers,
                         lora: { target in
                             guard let adapter, let site = adapter.sites[l][target.slot] else { return nil }
                             return LoRABranch(a: adapter.weights.pointer + site.a, b: adapter.weights.pointer + site.b,
                                               gradA: nil, gradB: nil, u: s.loraU.pointer + target.slot * b * rank,
                                               rank: rank, scale: adapter.config.scale)
                         },
                         attention: { qkv, out in
                             for i in 0..<b {
                                 let pos = cache.lengths[i], keys = cache.keys(layer: l, sequence: i)
                                 let values = cache.values(layer: l, sequence: i), row = qkv + i * 3 * C
                                 (keys + pos * C).update(from: row + C, count: C)
                                 (values + pos * C).update(from: row + 2 * C, count: C)
                                 for h in 0..<H {
                                     // scores[1, pos+1] = scale · q · K[0...pos]ᵀ; out = softmax(scores) · V
                                     BLAS.sgemm(transB: true, m: 1, n: pos + 1, k: d, alpha: scale, a: row + h * d, lda: 3 * C,
                                                b: keys + h * d, ldb: C, c: s.scores.pointer, ldc: pos + 1)
                                     causalSoftmaxRow(s.scores.pointer, valid: pos + 1, width: pos + 1)
                                     BLAS.sgemm(m: 1, n: d, k: pos + 1, a: s.scores.pointer, lda: pos + 1,
                                                b: values + h * d, ldb: C, c: out + i * C + h * d, ldc: C)
                                 }
                             }
                         })
            // The block read `input` before writing residual3, so the next layer can start from it.
            s.residual.pointer.update(from: buffers.residual3, count: b * C)
            input = UnsafePointer(s.residual.pointer)
        }
        for i in 0..<b { cache.lengths[i] += 1 }
        layerNormForward(out: s.hidden.pointer, mean: s.lnfMean.pointer, rstd: s.lnfRstd.pointer, x: input,
                         weight: pointer(layout.lnfWeight), bias: pointer(layout.lnfBias),
                         rows: b, channels: C, eps: config.layerNormEps)
    }

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
        let cache = KVCache(config: config, batch: b, capacity: min(config.contextLength, longest + o.maxNewTokens))
        var hidden = try prefill(prompts: prompts, adapter: adapter, cache: cache)
        let scratch = DecodeScratch(config: config, rows: b, capacity: cache.capacity, loraRank: adapter?.config.rank ?? 0)
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
                else if result.tokens[i].count >= o.maxNewTokens || cache.lengths[i] + 1 >= config.contextLength { active[i] = false }
            }
            guard active.contains(true) else { break }
            // Finished rows still run (their state is ignored), keeping one dense [B, C] batch;
            // they are pinned to a valid position so their cache writes stay in bounds.
            for i in 0..<b where !active[i] { cache.lengths[i] = min(cache.lengths[i], cache.capacity - 1); next[i] = 0 }
            decodeStep(tokens: next, adapter: adapter, cache: cache, scratch: scratch)
            hidden = scratch.hidden
        }
        return result
    }
}
