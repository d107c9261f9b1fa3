import Kernels

extension GPT2Trunk {
    /// Backward of `forward`, given dHidden [B, T, C] = ∂loss/∂(final LayerNorm output).
    ///
    /// - trunkGradients: when non-nil (a trainable trunk), full-weight gradients are accumulated
    ///   (+=) into it, in `layout` order, including wte/wpe from the embedding.
    /// - adapterGradients: when non-nil, LoRA A and B gradients of `adapter` are accumulated (+=)
    ///   into it, in the adapter's layout. With a frozen trunk this is the only output, and the
    ///   weight-gradient products of the trunk are skipped (a third of the backward FLOPs).
    /// Returns ∂loss/∂encoded [M, C] (the embedding sum) in a scratch buffer owned by `act`,
    /// valid until the next backward.
    @discardableResult
    public func backward(
        dHidden: FloatBuffer, adapter: LoRAAdapter? = nil, activations: any TrunkActivations,
        trunkGradients: FloatBuffer? = nil, adapterGradients: FloatBuffer? = nil,
        gradientsReady: GradientsReady? = nil
    ) -> FloatBuffer {
        guard let act = activations as? GPT2Activations, act.config == gpt2 else {
            preconditionFailure("backward: activations were made for another model")
        }
        let c = gpt2, C = c.channels, m = act.rows
        precondition(dHidden.count == m * C, "backward: dHidden has \(dHidden.count) floats, expected \(m * C)")
        if let trunkGradients {
            precondition(
                trunkGradients.count == layout.parameterCount, "backward: trunk gradient buffer has the wrong size")
        }
        if let adapterGradients, let adapter {
            precondition(
                adapterGradients.count == adapter.layout.totalCount,
                "backward: adapter gradient buffer has the wrong size")
        }
        let s = act.scratch
        let grad: (Int) -> UnsafeMutablePointer<Float>? = { offset in trunkGradients.map { $0.pointer + offset } }
        let dres = s.dResidual.pointer
        let lastResidual = act.residual3.pointer + (c.layers - 1) * m * C

        // Final LayerNorm.
        s.dResidual.zero()
        layerNormBackward(
            dx: dres, dweight: grad(layout.lnfWeight), dbias: grad(layout.lnfBias),
            dout: dHidden.pointer, x: lastResidual, weight: pointer(layout.lnfWeight),
            mean: act.lnfMean.pointer, rstd: act.lnfRstd.pointer,
            rows: m, channels: C, scratch: s.layerNorm.pointer)
        // gradientBuckets: [final norm, layer L-1, …, layer 0, embeddings].
        let ready = trunkGradients == nil ? nil : gradientsReady
        let buckets = ready == nil ? [] : gradientBuckets
        ready?(buckets[0])

        for l in stride(from: c.layers - 1, through: 0, by: -1) {
            blockBackward(layer: l, activations: act, adapter: adapter, adapterGradients: adapterGradients, grad: grad)
            ready?(buckets[c.layers - l])
        }
        if let trunkGradients { embeddingBackward(activations: act, trunkGradients: trunkGradients) }
        return s.dResidual
    }

    /// Block `l`'s backward: dres (scratch) holds ∂loss/∂residual3 of the block on entry and
    /// ∂loss/∂(the block's input) on return; weight gradients go through `grad`, LoRA's into
    /// `adapterGradients`.
    func blockBackward(
        layer l: Int, activations act: GPT2Activations, adapter: LoRAAdapter?, adapterGradients: FloatBuffer?,
        grad: (Int) -> UnsafeMutablePointer<Float>?
    ) {
        let c = gpt2, C = c.channels, I = c.innerSize, m = act.rows, t = act.tokens
        let s = act.scratch, dres = s.dResidual.pointer
        let shape = AttentionShape(batch: act.batch, tokens: t, channels: C, heads: c.heads)
        let w = layout.blocks[l]
        let input = l == 0 ? act.encoded.pointer : act.residual3.pointer + (l - 1) * m * C
        let ln1 = act.ln1.pointer + l * m * C, qkv = act.qkv.pointer + l * m * 3 * C
        let att = act.attention.pointer + l * m * C, res2 = act.residual2.pointer + l * m * C
        let ln2 = act.ln2.pointer + l * m * C, fc = act.fc.pointer + l * m * I
        let gelu = act.gelu.pointer + l * m * I
        func branch(_ projection: GPT2Projection) -> LoRABranch? {
            loraBranch(adapter, gradients: adapterGradients, layer: l, projection: projection, activations: act)
        }

        // MLP: residual3 = residual2 + gelu(ln2·Wfc + bfc)·Wproj + bproj. dres holds ∂/∂residual3.
        linearBackward(
            dx: s.dGelu.pointer, dWeight: grad(w.fcProjWeight), dBias: grad(w.fcProjBias),
            dout: dres, x: gelu, weight: matrix(w.fcProjWeight),
            rows: m, input: I, output: C, lora: branch(.mlpDown), loraScratch: s.dLoRA.pointer)
        s.dFc.zero()
        geluBackward(dx: s.dFc.pointer, dout: s.dGelu.pointer, x: fc, count: m * I)
        linearBackward(
            dx: s.dLn.pointer, dWeight: grad(w.fcWeight), dBias: grad(w.fcBias),
            dout: s.dFc.pointer, x: ln2, weight: matrix(w.fcWeight),
            rows: m, input: C, output: I, lora: branch(.mlpUp), loraScratch: s.dLoRA.pointer)
        layerNormBackward(
            dx: dres, dweight: grad(w.ln2Weight), dbias: grad(w.ln2Bias),
            dout: s.dLn.pointer, x: res2, weight: pointer(w.ln2Weight),
            mean: act.ln2Mean.pointer + l * m, rstd: act.ln2Rstd.pointer + l * m,
            rows: m, channels: C, scratch: s.layerNorm.pointer)
        // Attention: residual2 = input + attention(ln1·Wqkv + bqkv)·Wproj + bproj.
        linearBackward(
            dx: s.dAttention.pointer, dWeight: grad(w.attnProjWeight), dBias: grad(w.attnProjBias),
            dout: dres, x: att, weight: matrix(w.attnProjWeight),
            rows: m, input: C, output: C, lora: branch(.attentionOutput), loraScratch: s.dLoRA.pointer)
        s.dQKV.zero()
        attentionBackward(
            dqkv: s.dQKV.pointer, dout: s.dAttention.pointer, qkv: qkv,
            probs: act.probs.pointer + l * act.batch * c.heads * t * t, shape: shape,
            scratch: s.attention.pointer)
        linearBackward(
            dx: s.dLn.pointer, dWeight: grad(w.qkvWeight), dBias: grad(w.qkvBias),
            dout: s.dQKV.pointer, x: ln1, weight: matrix(w.qkvWeight),
            rows: m, input: C, output: 3 * C, lora: branch(.attentionQKV), loraScratch: s.dLoRA.pointer)
        layerNormBackward(
            dx: dres, dweight: grad(w.ln1Weight), dbias: grad(w.ln1Bias),
            dout: s.dLn.pointer, x: input, weight: pointer(w.ln1Weight),
            mean: act.ln1Mean.pointer + l * m, rstd: act.ln1Rstd.pointer + l * m,
            rows: m, channels: C, scratch: s.layerNorm.pointer)
    }

    /// Embeddings: encoded = wte[token] + wpe[position], so ∂/∂encoded (dres) adds to both rows.
    func embeddingBackward(activations act: GPT2Activations, trunkGradients: FloatBuffer) {
        let C = gpt2.channels, m = act.rows, t = act.tokens, dres = act.scratch.dResidual.pointer
        let dwte = trunkGradients.pointer + layout.tokenEmbedding
        let dwpe = trunkGradients.pointer + layout.positionEmbedding
        for row in 0..<m {
            vectorAdd(dwte + Int(act.tokenIds[row]) * C, dres + row * C, C)
            vectorAdd(dwpe + (row % t) * C, dres + row * C, C)
        }
    }
}
