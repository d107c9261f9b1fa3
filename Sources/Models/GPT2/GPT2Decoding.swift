import Kernels

/// Keys and values of every GPT-2 layer for a batch of sequences, each with its own length, in the
/// trunk's precision. Shapes: keys, values [L, B, capacity, C] (head h at columns h·d ..< (h+1)·d).
final class GPT2KVCache {
    let config: GPT2Config
    let batch: Int, capacity: Int
    let keys: KVCacheStorage, values: KVCacheStorage
    /// Tokens already in the cache per sequence = the position of its next token.
    var lengths: [Int]

    init(config: GPT2Config, batch: Int, capacity: Int, precision: Precision) {
        self.config = config
        self.batch = batch
        self.capacity = min(capacity, config.contextLength)
        keys = KVCacheStorage(count: config.layers * batch * self.capacity * config.channels, precision: precision)
        values = KVCacheStorage(count: config.layers * batch * self.capacity * config.channels, precision: precision)
        lengths = Array(repeating: 0, count: batch)
    }

    func keys(layer l: Int, sequence b: Int) -> KVRows { keys.rows(at: ((l * batch + b) * capacity) * config.channels) }
    func values(layer l: Int, sequence b: Int) -> KVRows {
        values.rows(at: ((l * batch + b) * capacity) * config.channels)
    }
}

/// Per-step buffers of the decode loop, M = B rows (one new token per sequence).
final class DecodeScratch {
    let residual: FloatBuffer, ln1, ln1Mean, ln1Rstd, qkv, attention, residual2, ln2, ln2Mean, ln2Rstd, fc, gelu,
        residual3: FloatBuffer
    let hidden, lnfMean, lnfRstd, loraU: FloatBuffer
    init(config c: GPT2Config, rows m: Int, loraRank: Int) {
        let C = c.channels, I = c.innerSize
        residual = FloatBuffer(count: m * C)
        ln1 = FloatBuffer(count: m * C)
        ln1Mean = FloatBuffer(count: m)
        ln1Rstd = FloatBuffer(count: m)
        qkv = FloatBuffer(count: m * 3 * C)
        attention = FloatBuffer(count: m * C)
        residual2 = FloatBuffer(count: m * C)
        ln2 = FloatBuffer(count: m * C)
        ln2Mean = FloatBuffer(count: m)
        ln2Rstd = FloatBuffer(count: m)
        fc = FloatBuffer(count: m * I)
        gelu = FloatBuffer(count: m * I)
        residual3 = FloatBuffer(count: m * C)
        hidden = FloatBuffer(count: m * C)
        lnfMean = FloatBuffer(count: m)
        lnfRstd = FloatBuffer(count: m)
        loraU = FloatBuffer(count: GPT2Projection.allCases.count * m * max(loraRank, 1))
    }
    var blockBuffers: BlockBuffers {
        BlockBuffers(
            ln1: ln1.pointer, ln1Mean: ln1Mean.pointer, ln1Rstd: ln1Rstd.pointer, qkv: qkv.pointer,
            attention: attention.pointer, residual2: residual2.pointer, ln2: ln2.pointer,
            ln2Mean: ln2Mean.pointer, ln2Rstd: ln2Rstd.pointer, fc: fc.pointer, gelu: gelu.pointer,
            residual3: residual3.pointer)
    }
}

/// GPT-2's KV-cache decoding: the cache, the step buffers and the trunk they run on.
final class GPT2Decoder: TrunkDecoder {
    let trunk: GPT2Trunk
    let cache: GPT2KVCache
    let scratch: DecodeScratch
    init(trunk: GPT2Trunk, batch: Int, capacity: Int, loraRank: Int) {
        self.trunk = trunk
        cache = GPT2KVCache(config: trunk.gpt2, batch: batch, capacity: capacity, precision: trunk.precision)
        scratch = DecodeScratch(config: trunk.gpt2, rows: batch, loraRank: loraRank)
    }
    var batch: Int { cache.batch }
    var capacity: Int { cache.capacity }
    var lengths: [Int] {
        get { cache.lengths }
        set { cache.lengths = newValue }
    }
    func prefill(prompts: [[Int32]], adapter: LoRAAdapter?) throws -> FloatBuffer {
        try trunk.prefill(prompts: prompts, adapter: adapter, cache: cache)
    }
    func step(tokens: [Int32], sequences: [Int], adapter: LoRAAdapter?) -> FloatBuffer {
        trunk.decodeStep(tokens: tokens, sequences: sequences, adapter: adapter, cache: cache, scratch: scratch)
        return scratch.hidden
    }
}

extension GPT2Trunk {
    /// Fills `cache` with the prompts (right-padded into one [B, Tp] inference forward, one layer
    /// of buffers: each layer's keys and values go straight into the cache) and returns the final
    /// hidden states [B, C] at each prompt's last token.
    func prefill(prompts: [[Int32]], adapter: LoRAAdapter?, cache: GPT2KVCache) throws -> FloatBuffer {
        let config = gpt2, b = prompts.count, C = config.channels
        let tp = prompts.map(\.count).max() ?? 0
        let last = FloatBuffer(count: b * C)
        for group in prefillGroups(count: b, length: tp, loraRank: adapter?.config.rank ?? 0) {
            var flat = [Int32](repeating: 0, count: group.count * tp)
            for (i, s) in group.enumerated() { for (j, id) in prompts[s].enumerated() { flat[i * tp + j] = id } }
            let hidden = try inferenceHidden(tokens: flat, batch: group.count, length: tp, adapter: adapter) { l, qkv in
                for (i, s) in group.enumerated() {
                    for t in 0..<prompts[s].count {
                        let row = qkv + (i * tp + t) * 3 * C
                        cache.keys(layer: l, sequence: s).store(row + C, at: t * C, count: C)
                        cache.values(layer: l, sequence: s).store(row + 2 * C, at: t * C, count: C)
                    }
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
    /// the batch) at position cache.lengths[that sequence], appends its key and value and writes
    /// the final hidden states [M, C], M = sequences.count, into scratch.hidden.
    func decodeStep(
        tokens: [Int32], sequences: [Int], adapter: LoRAAdapter?, cache: GPT2KVCache, scratch s: DecodeScratch
    ) {
        let config = gpt2, b = sequences.count, C = config.channels
        let wpe = pointer(layout.positionEmbedding)
        let positions = sequences.map { cache.lengths[$0] }
        embeddingRows(offset: layout.tokenEmbedding, ids: tokens, into: s.residual.pointer)
        for i in 0..<b {
            let out = s.residual.pointer + i * C
            vectorAdd(out, wpe + positions[i] * C, C)
        }
        let rank = adapter?.config.rank ?? 0
        let shape = DecodeAttentionShape(heads: config.heads, kvHeads: config.heads, headSize: config.headSize)
        let lengths = positions.map { $0 + 1 }  // with this step's token
        var input = UnsafePointer(s.residual.pointer)
        for l in 0..<config.layers {
            let buffers = s.blockBuffers
            let keys = sequences.map { cache.keys(layer: l, sequence: $0) },
                values = sequences.map { cache.values(layer: l, sequence: $0) }
            blockForward(
                layer: l, input: input, rows: b, buffers: buffers,
                lora: { projection in
                    guard let adapter, let site = adapter.sites[l][projection.slot] else { return nil }
                    return LoRABranch(
                        a: adapter.weights.pointer + site.a, b: adapter.weights.pointer + site.b,
                        gradA: nil, gradB: nil, u: s.loraU.pointer + projection.slot * b * rank,
                        rank: rank, scale: adapter.config.scale)
                },
                attention: { qkv, out in
                    for i in 0..<b {
                        let row = qkv + i * 3 * C
                        keys[i].store(row + C, at: positions[i] * C, count: C)
                        values[i].store(row + 2 * C, at: positions[i] * C, count: C)
                    }
                    decodeAttention(
                        out: out, outStride: C, q: qkv, qStride: 3 * C, keys: keys, values: values, lengths: lengths,
                        shape: shape)
                })
            // The block read `input` before writing residual3, so the next layer can start from it.
            s.residual.pointer.update(from: buffers.residual3, count: b * C)
            input = UnsafePointer(s.residual.pointer)
        }
        for i in sequences { cache.lengths[i] += 1 }
        layerNormForward(
            out: s.hidden.pointer, mean: s.lnfMean.pointer, rstd: s.lnfRstd.pointer, x: input,
            weight: pointer(layout.lnfWeight), bias: pointer(layout.lnfBias),
            rows: b, channels: C, eps: config.layerNormEps)
    }
}
