import Kernels

/// Mean negative log-likelihood of next tokens, with its full backward: the SFT objective and
/// the training step `rlhf bench model` measures.
public final class LanguageModelStep: @unchecked Sendable {
    public let trunk: any CausalLM
    public let activations: any TrunkActivations
    public let head: LMHeadCache
    let dHidden: FloatBuffer

    public init(trunk: any CausalLM, batch: Int, tokens: Int, loraRank: Int = 0) {
        self.trunk = trunk
        activations = trunk.makeActivations(batch: batch, tokens: tokens, loraRank: loraRank)
        head = LMHeadCache(rows: batch * tokens, vocab: trunk.config.vocabSize)
        dHidden = FloatBuffer(count: batch * tokens * trunk.config.channels)
    }

    /// loss = −(1/N) Σ log p(targets[i]) over the rows with targets[i] ≥ 0, N = `normalizer` or,
    /// by default, the number of such rows. A global batch split into micro-batches passes its
    /// total target count, so the accumulated gradient is that of the whole batch's token mean.
    /// Gradients are accumulated (+=) into trunkGradients and/or adapterGradients when given;
    /// `gradientsReady` hears of each trunk-gradient range as the backward finishes it.
    @discardableResult
    public func run(
        tokens: [Int32], targets: [Int32], normalizer: Int? = nil, adapter: LoRAAdapter? = nil,
        trunkGradients: FloatBuffer? = nil, adapterGradients: FloatBuffer? = nil,
        gradientsReady: GradientsReady? = nil
    ) throws -> Float {
        try trunk.forward(tokens: tokens, adapter: adapter, activations: activations)
        let logProbs = trunk.lmHeadLogProbs(hidden: activations.hidden, targets: targets, cache: head)
        let n = normalizer ?? targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }
        guard n > 0 else { throw ModelError.input("language-model loss: no targets in the batch") }
        var loss: Double = 0
        for (lp, t) in zip(logProbs, targets) where t >= 0 { loss -= Double(lp) }
        loss /= Double(n)
        guard trunkGradients != nil || adapterGradients != nil else { return Float(loss) }
        let dLogProbs = targets.map { $0 >= 0 ? -1 / Float(n) : 0 }
        dHidden.zero()
        trunk.lmHeadBackward(
            dLogProbs: dLogProbs, hidden: activations.hidden, cache: head,
            dHidden: dHidden, trunkGradients: trunkGradients)
        trunk.backward(
            dHidden: dHidden, adapter: adapter, activations: activations,
            trunkGradients: trunkGradients, adapterGradients: adapterGradients, gradientsReady: gradientsReady)
        return Float(loss)
    }

    /// Matrix-multiply FLOPs of one forward of this shape; a training step issues 3× this.
    public static func forwardFLOPs(config c: any ModelConfiguration, batch b: Int, tokens t: Int) -> Double {
        c.forwardFLOPs(batch: b, tokens: t)
    }
}
