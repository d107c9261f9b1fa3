import Kernels

/// The hyper-parameters of one model family (GPT-2, Llama, …) in the family-free terms every role,
/// stage and tool reads, plus what only the family knows how to compute: its parameter count,
/// LoRA projections, Hugging Face config.json and the model itself. Families implement it in
/// their own folder (`GPT2/`) and register in `ModelFamilies`.
public protocol ModelConfiguration: Sendable {
    /// Hugging Face's `model_type` of the family ("gpt2").
    var modelType: String { get }
    var vocabSize: Int { get }  // V
    var contextLength: Int { get }  // the longest sequence the model computes
    var channels: Int { get }  // C: width of the residual stream and the final hidden states
    var layers: Int { get }  // L
    var heads: Int { get }  // H query heads
    var kvHeads: Int { get }  // G key/value heads (= H without grouped-query attention)
    var headSize: Int { get }  // d
    var innerSize: Int { get }  // MLP width
    var bosTokenId: Int? { get }
    var eosTokenId: Int? { get }

    /// Where each parameter lives in the flat buffer, under Hugging Face's tensor names (without
    /// the model's prefix).
    var parameterLayout: TensorLayout { get }
    /// What a frozen trunk in bf16 keeps in bf16 only (`CausalLM.keepOnlyBF16`): the projection
    /// matrices and an untied LM head; not the embeddings (read as rows), norms or biases.
    var bf16OnlyRanges: [Range<Int>] { get }
    /// The part of the model a tensor belongs to, for parameter counts by group.
    func parameterGroup(of tensorName: String) -> ParameterGroup
    /// The projections of one layer a LoRA adapter can wrap, in the family's order (the order of
    /// an adapter's tensors), by the module names PEFT uses for them.
    var loraProjections: [LoRAProjection] { get }
    /// The module path of `target` in `layer`, as named in the adapter's tensors ("h.3.attn.c_attn").
    func loraModulePath(layer: Int, target: LoRATarget) -> String
    /// What PEFT puts before a module path in adapter_model.safetensors.
    var peftTensorPrefix: String { get }
    /// PEFT's `fan_in_fan_out`: the wrapped layers store weights [in, out] (Conv1D) rather than [out, in].
    var loraFanInFanOut: Bool { get }

    /// The same family and shape with another vocabulary and special tokens (a tokenizer's).
    func withVocabulary(size: Int, bosTokenId: Int?, eosTokenId: Int?) -> any ModelConfiguration
    /// A model of this configuration over `weights` (zeros when nil).
    func makeModel(weights: FloatBuffer?) throws -> any CausalLM
    /// config.json as transformers writes it for this family.
    func hfConfigJSON() -> [String: Any]
    /// Bytes of one activation set at batch × tokens (memory plan): what the training forward keeps
    /// for its backward, the LoRA branch rows of rank `loraRank`, the backward's scratch, plus an
    /// LM-head cache when `lmHead`.
    func trainingActivationBytes(batch: Int, tokens: Int, loraRank: Int, lmHead: Bool) -> Double
    /// Bytes `inferenceHidden` allocates at batch × tokens: one layer's buffers reused layer after
    /// layer, the residual stream and the final hidden states (scoring chunks, memory plan).
    func inferenceActivationBytes(batch: Int, tokens: Int, loraRank: Int) -> Double
    /// Matrix-multiply FLOPs of one forward of this shape (a training step issues 3× this).
    func forwardFLOPs(batch: Int, tokens: Int) -> Double
    func isEqual(to other: any ModelConfiguration) -> Bool
    /// Why the context is shorter than the position limit, when it is ("" otherwise).
    var contextNote: String { get }
}

extension ModelConfiguration where Self: Equatable {
    public func isEqual(to other: any ModelConfiguration) -> Bool { (other as? Self) == self }
}

extension ModelConfiguration {
    public var contextNote: String { "" }

    /// Floats in the flat parameter buffer.
    public var parameterCount: Int { parameterLayout.totalCount }

    /// Every projection LoRA can wrap (PEFT's target_modules "all-linear" minus the LM head).
    public var allLoRATargets: [LoRATarget] { loraProjections.map(\.target) }

    /// `targets` with "all-linear" replaced by every projection of the family (in the family's order).
    public func resolving(_ targets: [LoRATarget]) -> [LoRATarget] {
        guard targets.contains(.allLinear) else { return targets }
        let named = Set(targets)
        return allLoRATargets.filter { named.contains($0) || named.contains(.allLinear) }
    }

    /// The family's projection named `target`, or an error listing the family's names.
    public func loraProjection(_ target: LoRATarget) throws -> (slot: Int, projection: LoRAProjection) {
        guard let slot = loraProjections.firstIndex(where: { $0.target == target }) else {
            throw ModelError.invalidConfig(
                "LoRA target '\(target)' is not a projection of \(modelType) models "
                    + "(\(allLoRATargets.map(\.name).joined(separator: ", ")))"
            )
        }
        return (slot, loraProjections[slot])
    }
}

/// The parts of a trunk, for parameter counts (`rlhf inspect`).
public enum ParameterGroup: String, Sendable {
    case embeddings, attention, mlp, blockNorms = "block_norms", finalNorm = "final_norm"
}

/// One projection a LoRA adapter can wrap: its name and (in, out) features.
public struct LoRAProjection: Sendable, Equatable {
    public let target: LoRATarget
    public let input: Int, output: Int
    public init(_ target: LoRATarget, input: Int, output: Int) {
        self.target = target
        self.input = input
        self.output = output
    }
}

/// One causal language-model trunk: embeddings, L blocks and the final norm, whose final hidden
/// states [B, T, C] every head reads (the LM head, the reward and value heads). Adapters and heads
/// are arguments, never state, so one trunk object serves every role of the Hydra layout.
///
/// Family-free algorithms (sampling, scoring, the LM head and its backward, the training steps)
/// are extensions of this protocol; a family supplies the passes below.
public protocol CausalLM: AnyObject, Sendable {
    var config: any ModelConfiguration { get }
    /// Every parameter in one flat buffer, laid out as `parameterLayout` names it (Hugging Face's
    /// tensor names without the model's prefix).
    var weights: FloatBuffer { get }
    var parameterLayout: TensorLayout { get }
    /// Offset in `weights` of the LM head [V, C] (the token embedding when they are tied).
    var lmHeadOffset: Int { get }
    /// The precision of the weight products and, in bf16, the weights' bf16 copy (`use(_:frozen:)`).
    var matmulWeights: MatmulWeights { get }
    /// The parameter buffer cut into the pieces a data-parallel step all-reduces, in the order a
    /// backward finishes them: first the ranges `backward(gradientsReady:)` reports (final norm,
    /// last layer … first layer), then the rest (embeddings, an untied LM head). Every rank
    /// reduces them in this order, whether or not it overlapped them with its backward.
    var gradientBuckets: [Range<Int>] { get }

    /// The family's initialisation (as transformers' `_init_weights`), from `rng`.
    func initialize(rng: inout RNG)
    /// A trunk with its own copy of the weights.
    func clone() throws -> any CausalLM
    /// A copy of this trunk with `adapter` folded into the weights it wraps.
    func merging(_ adapter: LoRAAdapter) throws -> any CausalLM

    /// Buffers a training forward keeps for its backward, for batches of `batch` × `tokens`.
    func makeActivations(batch: Int, tokens: Int, loraRank: Int) -> any TrunkActivations
    /// Forward over right-padded tokens [B, T] with `adapter` applied (nil: adapters off); fills
    /// `activations`, whose `hidden` [B, T, C] is the final norm's output.
    func forward(tokens: [Int32], adapter: LoRAAdapter?, activations: any TrunkActivations) throws
    /// Backward of `forward` given ∂loss/∂hidden [B, T, C]: accumulates (+=) full-weight gradients
    /// into `trunkGradients` and LoRA gradients into `adapterGradients` (each when non-nil).
    /// Returns ∂loss/∂(input embeddings) [M, C], valid until the next backward.
    /// `gradientsReady`, when given, is called with each range of `trunkGradients` (a layer's
    /// block, the final norm) as soon as this backward will not write it again, so its all-reduce
    /// can start while the layers below are still computed; ranges never reported (embeddings,
    /// an untied LM head) are final only when backward returns.
    @discardableResult
    func backward(
        dHidden: FloatBuffer, adapter: LoRAAdapter?, activations: any TrunkActivations,
        trunkGradients: FloatBuffer?, adapterGradients: FloatBuffer?, gradientsReady: GradientsReady?
    ) -> FloatBuffer
    /// Forward without a backward, one layer of buffers reused: final hidden states [B, T, C].
    func inferenceHidden(tokens: [Int32], batch: Int, length: Int, adapter: LoRAAdapter?) throws -> FloatBuffer
    /// A KV cache and its step buffers for `batch` sequences of up to `capacity` tokens.
    func makeDecoder(batch: Int, capacity: Int, loraRank: Int) -> any TrunkDecoder
    /// Tensors to write to model.safetensors under Hugging Face's full names.
    func hfTensors() -> [(name: String, shape: [Int], data: UnsafePointer<Float>)]
}

/// What a training forward keeps for the backward; made by `CausalLM.makeActivations`.
public protocol TrunkActivations: AnyObject, Sendable {
    var batch: Int { get }
    var tokens: Int { get }
    var loraRank: Int { get }
    /// Final norm output [B, T, C]: the hidden states every head reads.
    var hidden: FloatBuffer { get }
}

extension TrunkActivations {
    /// M = B·T rows.
    public var rows: Int { batch * tokens }
}

/// Incremental decoding with a KV cache; made by `CausalLM.makeDecoder`.
public protocol TrunkDecoder: AnyObject {
    var batch: Int { get }
    var capacity: Int { get }
    /// Tokens already in the cache per sequence = the position of its next token.
    var lengths: [Int] { get set }
    /// Fills the cache with the prompts (right-padded into one forward); returns the final hidden
    /// states [B, C] at each prompt's last token.
    func prefill(prompts: [[Int32]], adapter: LoRAAdapter?) throws -> FloatBuffer
    /// Feeds tokens[r] to sequence sequences[r] at position lengths[sequences[r]] (the rows still
    /// decoding: finished sequences leave the batch), appends its keys and values, and returns
    /// the final hidden states [M, C], M = sequences.count (a buffer reused by the next step).
    func step(tokens: [Int32], sequences: [Int], adapter: LoRAAdapter?) -> FloatBuffer
}

/// Told a range of the trunk's gradient buffer that a backward has finished (see `CausalLM.backward`).
public typealias GradientsReady = (Range<Int>) -> Void

extension CausalLM {
    @discardableResult
    public func backward(
        dHidden: FloatBuffer, adapter: LoRAAdapter?, activations: any TrunkActivations,
        trunkGradients: FloatBuffer?, adapterGradients: FloatBuffer?
    ) -> FloatBuffer {
        backward(
            dHidden: dHidden, adapter: adapter, activations: activations, trunkGradients: trunkGradients,
            adapterGradients: adapterGradients, gradientsReady: nil)
    }

    public var parameterCount: Int { parameterLayout.totalCount }

    /// Forward with adapters off.
    public func forward(tokens: [Int32], activations: any TrunkActivations) throws {
        try forward(tokens: tokens, adapter: nil, activations: activations)
    }

    public func inferenceHidden(tokens: [Int32], batch: Int, length: Int) throws -> FloatBuffer {
        try inferenceHidden(tokens: tokens, batch: batch, length: length, adapter: nil)
    }

}
