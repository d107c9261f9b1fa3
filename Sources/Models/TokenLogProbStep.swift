import Kernels

/// A forward that keeps its cache, then a backward with arbitrary per-token weights on the
/// log-probs. Preference losses (DPO family, CPL, InSPO) reach the model only through sums of
/// token log-probs, so dL/d log p_t is the loss's derivative with respect to the sum its token
/// belongs to; one forward and one backward per micro-batch, as in a plain SFT step.
public final class TokenLogProbStep: @unchecked Sendable {
    public let trunk: any CausalLM
    public let activations: any TrunkActivations
    public let head: LMHeadCache
    let dHidden: FloatBuffer  // [B, T, C]
    let adapter: LoRAAdapter?

    public init(trunk: any CausalLM, batch: Int, tokens: Int, adapter: LoRAAdapter? = nil) {
        self.trunk = trunk
        self.adapter = adapter
        activations = trunk.makeActivations(batch: batch, tokens: tokens, loraRank: adapter?.config.rank ?? 0)
        head = LMHeadCache(rows: batch * tokens, vocab: trunk.config.vocabSize)
        dHidden = FloatBuffer(count: batch * tokens * trunk.config.channels)
    }

    /// log p(targets[i]) for the B·T rows of `tokens` [B, T] (target −1 ⇒ 0), keeping the cache.
    public func forward(tokens: [Int32], targets: [Int32]) throws -> [Float] {
        precondition(
            tokens.count == activations.rows && targets.count == activations.rows,
            "TokenLogProbStep: batch is not [B, T]")
        try trunk.forward(tokens: tokens, adapter: adapter, activations: activations)
        return trunk.lmHeadLogProbs(hidden: activations.hidden, targets: targets, cache: head)
    }

    /// Backward of Σ dLogProbs[i] · log p_i through the last `forward`: gradients are accumulated
    /// (+=) into trunkGradients (full fine-tuning) and/or adapterGradients (LoRA).
    public func backward(
        dLogProbs: [Float], trunkGradients: FloatBuffer?, adapterGradients: FloatBuffer?,
        gradientsReady: GradientsReady? = nil
    ) {
        dHidden.zero()
        trunk.lmHeadBackward(
            dLogProbs: dLogProbs, hidden: activations.hidden, cache: head, dHidden: dHidden,
            trunkGradients: trunkGradients)
        trunk.backward(
            dHidden: dHidden, adapter: adapter, activations: activations,
            trunkGradients: trunkGradients, adapterGradients: adapterGradients, gradientsReady: gradientsReady)
    }
}
