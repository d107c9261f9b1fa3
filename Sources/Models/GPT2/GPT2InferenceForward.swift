import Kernels

extension GPT2Trunk {
    /// Forward without a backward: final hidden states [B, T, C] of right-padded `tokens`, using
    /// one layer's worth of buffers reused layer after layer (L× less memory than
    /// `forward(tokens:activations:)`, which keeps every layer for the backward). The scoring
    /// passes of RL (reference, reward, values, old log-probs) run through it.
    public func inferenceHidden(tokens: [Int32], batch b: Int, length t: Int, adapter: LoRAAdapter? = nil) throws
        -> FloatBuffer
    {
        matmulWeights.refresh(from: weights)
        return try inferenceHidden(tokens: tokens, batch: b, length: t, adapter: adapter, keysAndValues: nil)
    }

    /// `keysAndValues(layer, qkv)` sees each layer's query-key-value rows [B·T, 3C] (a prefill
    /// copies the keys and values into its cache).
    func inferenceHidden(
        tokens: [Int32], batch b: Int, length t: Int, adapter: LoRAAdapter?,
        keysAndValues: ((Int, UnsafePointer<Float>) -> Void)?
    ) throws -> FloatBuffer {
        let config = gpt2, C = config.channels, I = config.innerSize, m = b * t
        try checkInferenceInput(tokens, batch: b, length: t)
        let residual = FloatBuffer(count: m * C)
        let ln1 = FloatBuffer(count: m * C), mean = FloatBuffer(count: m), rstd = FloatBuffer(count: m)
        let qkv = FloatBuffer(count: m * 3 * C), attention = FloatBuffer(count: m * C),
            residual2 = FloatBuffer(count: m * C)
        let ln2 = FloatBuffer(count: m * C), fc = FloatBuffer(count: m * I), gelu = FloatBuffer(count: m * I),
            residual3 = FloatBuffer(count: m * C)
        let probs = FloatBuffer(count: b * config.heads * t * t)
        let rank = adapter?.config.rank ?? 0
        let loraU = FloatBuffer(count: GPT2Projection.allCases.count * m * max(rank, 1))
        // BlockBuffers holds raw pointers: keep every buffer alive until the last layer is done.
        return withExtendedLifetime(
            (residual, ln1, mean, rstd, qkv, attention, residual2, ln2, fc, gelu, residual3, probs, loraU)
        ) {
            let buffers = BlockBuffers(
                ln1: ln1.pointer, ln1Mean: mean.pointer, ln1Rstd: rstd.pointer, qkv: qkv.pointer,
                attention: attention.pointer, residual2: residual2.pointer, ln2: ln2.pointer,
                ln2Mean: mean.pointer, ln2Rstd: rstd.pointer, fc: fc.pointer, gelu: gelu.pointer,
                residual3: residual3.pointer)
            embeddingRows(offset: layout.tokenEmbedding, ids: tokens, into: residual.pointer)
            let wpe = pointer(layout.positionEmbedding)
            for row in 0..<m {
                let out = residual.pointer + row * C
                vectorAdd(out, wpe + (row % t) * C, C)
            }
            let shape = AttentionShape(batch: b, tokens: t, channels: C, heads: config.heads)
            for l in 0..<config.layers {
                blockForward(
                    layer: l, input: residual.pointer, rows: m, buffers: buffers,
                    lora: { projection in
                        guard let adapter, let site = adapter.sites[l][projection.slot] else { return nil }
                        return LoRABranch(
                            a: adapter.weights.pointer + site.a, b: adapter.weights.pointer + site.b, gradA: nil,
                            gradB: nil,
                            u: loraU.pointer + projection.slot * m * rank, rank: rank, scale: adapter.config.scale)
                    },
                    attention: { q, out in
                        keysAndValues?(l, q)
                        attentionForward(out: out, probs: probs.pointer, qkv: q, shape: shape)
                    })
                residual.copy(from: residual3)
            }
            let hidden = FloatBuffer(count: m * C)
            layerNormForward(
                out: hidden.pointer, mean: mean.pointer, rstd: rstd.pointer, x: residual.pointer,
                weight: pointer(layout.lnfWeight), bias: pointer(layout.lnfBias), rows: m, channels: C,
                eps: config.layerNormEps)
            return hidden
        }
    }

    /// B×T token ids within the context and the vocabulary, or an error naming the problem.
    func checkInferenceInput(_ tokens: [Int32], batch b: Int, length t: Int) throws {
        guard tokens.count == b * t else {
            throw ModelError.input("inference forward: \(tokens.count) token ids for a \(b)×\(t) batch")
        }
        guard t <= gpt2.contextLength else {
            throw ModelError.input("inference forward: \(t) tokens exceed the context of \(gpt2.contextLength)")
        }
        for id in tokens where id < 0 || Int(id) >= gpt2.vocabSize {
            throw ModelError.input("inference forward: token id \(id) is outside the vocabulary 0..<\(gpt2.vocabSize)")
        }
    }
}
