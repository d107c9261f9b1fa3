import Kernels

/// Keys (after rotation) and values of every layer for a batch of sequences, each with its own
/// length, in the trunk's precision. Shapes: keys, values [L, B, capacity, G·d]: sized by the
/// key/value heads, so grouped-query attention keeps H/G times less than one entry per query head.
final class LlamaKVCache {
    let config: LlamaConfig
    let batch: Int, capacity: Int
    let keys: KVCacheStorage, values: KVCacheStorage
    var lengths: [Int]

    init(config: LlamaConfig, batch: Int, capacity: Int, precision: Precision) {
        self.config = config
        self.batch = batch
        self.capacity = min(capacity, config.contextLength)
        keys = KVCacheStorage(count: config.layers * batch * self.capacity * config.kvWidth, precision: precision)
        values = KVCacheStorage(count: config.layers * batch * self.capacity * config.kvWidth, precision: precision)
        lengths = Array(repeating: 0, count: batch)
    }

    func keys(layer l: Int, sequence b: Int) -> KVRows { keys.rows(at: ((l * batch + b) * capacity) * config.kvWidth) }
    func values(layer l: Int, sequence b: Int) -> KVRows {
        values.rows(at: ((l * batch + b) * capacity) * config.kvWidth)
    }
}

/// Llama's KV-cache decoding: the cache, one layer of step buffers (M = B rows) and the trunk.
final class LlamaDecoder: TrunkDecoder {
    let trunk: LlamaTrunk
    let cache: LlamaKVCache
    let buffers: LlamaBlockBuffers
    let storage: [FloatBuffer]
    let residual: FloatBuffer, hidden: FloatBuffer, rstdFinal: FloatBuffer, loraU: FloatBuffer

    init(trunk: LlamaTrunk, batch: Int, capacity: Int, loraRank: Int) {
        self.trunk = trunk
        let c = trunk.llama
        cache = LlamaKVCache(config: c, batch: batch, capacity: capacity, precision: trunk.precision)
        (buffers, storage) = LlamaBlockBuffers.allocate(config: c, rows: batch)
        residual = FloatBuffer(count: batch * c.channels)
        hidden = FloatBuffer(count: batch * c.channels)
        rstdFinal = FloatBuffer(count: batch)
        loraU = FloatBuffer(count: LlamaProjection.allCases.count * batch * max(loraRank, 1))
    }
    var batch: Int { cache.batch }
    var capacity: Int { cache.capacity }
    var lengths: [Int] {
        get { cache.lengths }
        set { cache.lengths = newValue }
    }

    /// Fills the cache with the prompts (right-padded to Tp, one inference forward per group of
    /// `PrefillGroups`, one layer of buffers: each layer's keys and values go straight into the
    /// cache) and returns the final hidden states [B, C] at each prompt's last token.
    func prefill(prompts: [[Int32]], adapter: LoRAAdapter?) throws -> FloatBuffer {
        let c = trunk.llama, b = prompts.count, C = c.channels, kw = c.kvWidth
        let tp = prompts.map(\.count).max() ?? 0
        guard tp <= cache.capacity else {
            throw ModelError.input("prefill: a prompt of \(tp) tokens exceeds the cache of \(cache.capacity)")
        }
        let cache = self.cache, last = FloatBuffer(count: b * C)
        for group in trunk.prefillGroups(count: b, length: tp, loraRank: adapter?.config.rank ?? 0) {
            var flat = [Int32](repeating: 0, count: group.count * tp)
            for (i, s) in group.enumerated() { for (j, id) in prompts[s].enumerated() { flat[i * tp + j] = id } }
            let hidden = try trunk.inferenceHidden(tokens: flat, batch: group.count, length: tp, adapter: adapter) {
                l, k, v in
                for (i, s) in group.enumerated() {
                    cache.keys(layer: l, sequence: s).store(k + i * tp * kw, count: prompts[s].count * kw)
                    cache.values(layer: l, sequence: s).store(v + i * tp * kw, count: prompts[s].count * kw)
                }
            }
            for (i, s) in group.enumerated() {
                (last.pointer + s * C).update(from: hidden.pointer + (i * tp + prompts[s].count - 1) * C, count: C)
            }
        }
        cache.lengths = prompts.map(\.count)
        return last
    }

    /// Feeds tokens[r] to sequence sequences[r] (the rows still decoding; finished ones have left
    /// the batch) at position lengths[that sequence], appends its key and value, and returns the
    /// final hidden states [M, C], M = sequences.count (a buffer reused by the next step).
    func step(tokens: [Int32], sequences: [Int], adapter: LoRAAdapter?) -> FloatBuffer {
        let c = trunk.llama, b = sequences.count, C = c.channels, kw = c.kvWidth, qw = c.queryWidth
        trunk.embeddingRows(offset: trunk.layout.tokenEmbedding, ids: tokens, into: residual.pointer)
        let rank = adapter?.config.rank ?? 0
        let shape = DecodeAttentionShape(heads: c.heads, kvHeads: c.kvHeads, headSize: c.headSize)
        // with this step's token
        let positions = sequences.map { cache.lengths[$0] }, lengths = positions.map { $0 + 1 }
        for l in 0..<c.layers {
            let keys = sequences.map { cache.keys(layer: l, sequence: $0) },
                values = sequences.map { cache.values(layer: l, sequence: $0) }
            trunk.blockForward(
                layer: l, input: residual.pointer, rows: b, positions: positions, buffers: buffers,
                lora: {
                    self.trunk.loraBranch(
                        adapter, gradients: nil, layer: l, projection: $0,
                        u: self.loraU.pointer + $0.slot * b * max(rank, 1))
                },
                attention: { q, k, v, out in
                    for i in 0..<b {
                        keys[i].store(k + i * kw, at: positions[i] * kw, count: kw)
                        values[i].store(v + i * kw, at: positions[i] * kw, count: kw)
                    }
                    decodeAttention(
                        out: out, outStride: qw, q: q, qStride: qw, keys: keys, values: values, lengths: lengths,
                        shape: shape)
                })
            residual.pointer.update(from: buffers.residual3, count: b * C)
        }
        for i in sequences { cache.lengths[i] += 1 }
        rmsNormForward(
            out: hidden.pointer, rstd: rstdFinal.pointer, x: residual.pointer,
            weight: trunk.pointer(trunk.layout.finalNorm),
            rows: b, channels: C, eps: c.rmsNormEps)
        return hidden
    }
}

extension LlamaTrunk {
    /// Forward without a backward: final hidden states [B, T, C] of right-padded `tokens`, one
    /// layer of buffers reused layer after layer (the scoring passes of RL run through it).
    public func inferenceHidden(tokens: [Int32], batch b: Int, length t: Int, adapter: LoRAAdapter? = nil) throws
        -> FloatBuffer
    {
        matmulWeights.refresh(from: weights)
        return try inferenceHidden(tokens: tokens, batch: b, length: t, adapter: adapter, keysAndValues: nil)
    }

    /// `keysAndValues(layer, k, v)` sees each layer's rotated keys and values [B·T, G·d] (a
    /// prefill copies them into its cache).
    func inferenceHidden(
        tokens: [Int32], batch b: Int, length t: Int, adapter: LoRAAdapter?,
        keysAndValues: ((Int, UnsafePointer<Float>, UnsafePointer<Float>) -> Void)?
    ) throws -> FloatBuffer {
        let c = llama, C = c.channels, m = b * t
        guard tokens.count == m else {
            throw ModelError.input("inference forward: \(tokens.count) token ids for a \(b)×\(t) batch")
        }
        guard t <= c.contextLength else {
            throw ModelError.input(
                "inference forward: \(t) tokens exceed the context of \(c.contextLength)\(c.contextNote)")
        }
        try checkInput(tokens, adapter: adapter, pass: "inference forward")
        let (buffers, storage) = LlamaBlockBuffers.allocate(config: c, rows: m)
        let residual = FloatBuffer(count: m * C), probs = FloatBuffer(count: b * c.heads * t * t)
        let rank = adapter?.config.rank ?? 0
        let loraU = FloatBuffer(count: LlamaProjection.allCases.count * m * max(rank, 1))
        let positions = (0..<m).map { $0 % t }
        let shape = GroupedAttentionShape(batch: b, tokens: t, heads: c.heads, kvHeads: c.kvHeads, headSize: c.headSize)
        return withExtendedLifetime((storage, residual, probs, loraU)) {
            embeddingRows(offset: layout.tokenEmbedding, ids: tokens, into: residual.pointer)
            for l in 0..<c.layers {
                blockForward(
                    layer: l, input: residual.pointer, rows: m, positions: positions, buffers: buffers,
                    lora: {
                        self.loraBranch(
                            adapter, gradients: nil, layer: l, projection: $0,
                            u: loraU.pointer + $0.slot * m * max(rank, 1))
                    },
                    attention: { q, k, v, out in
                        keysAndValues?(l, k, v)
                        groupedAttentionForward(out: out, probs: probs.pointer, q: q, k: k, v: v, shape: shape)
                    })
                residual.pointer.update(from: buffers.residual3, count: m * C)
            }
            let hidden = FloatBuffer(count: m * C), rstd = FloatBuffer(count: m)
            rmsNormForward(
                out: hidden.pointer, rstd: rstd.pointer, x: residual.pointer, weight: pointer(layout.finalNorm),
                rows: m, channels: C, eps: c.rmsNormEps)
            return hidden
        }
    }

}
