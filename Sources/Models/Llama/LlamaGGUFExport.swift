import Foundation
import GGUF
import Kernels

/// A Llama-family model as llama.cpp's converter (convert_hf_to_gguf.py) writes it: `{arch}.*`
/// metadata, llama.cpp's tensor names, Q/K rows interleaved for the `llama` architecture (so that
/// llama.cpp's rotary, which pairs adjacent rows, computes transformers' rotate-half), norms and
/// biases kept F32, no output.weight when the head is tied.
public enum GGUFExport {
    /// The writer holding `model`'s metadata and tensors in `type`; `f16Fallback` names the matrices
    /// whose rows are not whole blocks of `type`, written as F16 instead (as llama.cpp's converter
    /// falls back; the caller reports them).
    public static func writer(model: any CausalLM, type: GGMLType, name: String) throws -> (
        writer: GGUFWriter, f16Fallback: [String]
    ) {
        guard let config = model.config as? LlamaConfig else {
            throw ModelError.invalidConfig(
                "GGUF export writes Llama-family models (llama, qwen2, mistral); this is a \(model.config.modelType) "
                    + "model (use --format hf)"
            )
        }
        let arch = config.variant == .qwen2 ? "qwen2" : "llama"
        guard arch != "qwen2" || !(config.outputBias || config.mlpBias) else {
            throw ModelError.invalidConfig(
                "llama.cpp's qwen2 has q/k/v biases only; this model also has output or MLP biases (use --format hf)")
        }
        try model.requireFP32Weights(for: "GGUF export")
        var w = metadataWriter(config, arch: arch, type: type, name: name)
        var f16Fallback: [String] = []
        let layout = LlamaLayout(config: config)
        for tensor in layout.tensors.tensors {
            guard let ggufName = GGUFModel.ggufName(of: tensor.name) else {
                throw ModelError.invalidConfig("tensor '\(tensor.name)' has no llama.cpp name")
            }
            var values = Array(UnsafeBufferPointer(start: model.weights.pointer + tensor.offset, count: tensor.count))
            if arch == "llama", let heads = GGUFModel.rotaryHeads(of: tensor.name, config: config) {
                values.withUnsafeMutableBufferPointer {
                    GGUFModel.unpermuteRotaryRows(
                        $0.baseAddress!, rows: tensor.shape[0], columns: tensor.shape.count > 1 ? tensor.shape[1] : 1,
                        heads: heads, inverse: true)
                }
            }
            var tensorType = tensor.shape.count == 1 ? GGMLType.f32 : type
            if tensor.shape.last! % tensorType.blockSize != 0 {
                tensorType = .f16
                f16Fallback.append(ggufName)
            }
            try values.withUnsafeBufferPointer {
                try w.addTensor(name: ggufName, shape: tensor.shape, values: $0, type: tensorType)
            }
        }
        if let scaling = config.ropeScaling {
            // llama3 rope scaling as llama.cpp's converter writes it: each frequency's divisor.
            let base = config.rotaryFrequencies(unscaled: true), scaled = scaling.scale(base)
            let divisors = zip(base, scaled).map { $0 / $1 }
            try divisors.withUnsafeBufferPointer {
                try w.addTensor(name: "rope_freqs.weight", shape: [divisors.count], values: $0, type: .f32)
            }
        }
        return (w, f16Fallback)
    }

    /// A writer holding the `general.*` and `{arch}.*` metadata of `config`.
    static func metadataWriter(_ config: LlamaConfig, arch: String, type: GGMLType, name: String) -> GGUFWriter {
        var w = GGUFWriter()
        w.set("general.architecture", .string(arch))
        w.set("general.name", .string(name))
        // llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7.
        w.set("general.file_type", .uint32([GGMLType.f32: 0, .f16: 1, .q8_0: 7][type] ?? 0))
        if type == .q8_0 { w.set("general.quantization_version", .uint32(2)) }
        func key(_ k: String, _ v: GGUFValue) { w.set("\(arch).\(k)", v) }
        key("vocab_size", .uint32(UInt32(config.vocabSize)))
        key("context_length", .uint32(UInt32(config.maxPositions)))
        key("embedding_length", .uint32(UInt32(config.channels)))
        key("block_count", .uint32(UInt32(config.layers)))
        key("feed_forward_length", .uint32(UInt32(config.innerSize)))
        key("attention.head_count", .uint32(UInt32(config.heads)))
        key("attention.head_count_kv", .uint32(UInt32(config.kvHeads)))
        key("attention.key_length", .uint32(UInt32(config.headSize)))
        key("attention.value_length", .uint32(UInt32(config.headSize)))
        key("attention.layer_norm_rms_epsilon", .float32(config.rmsNormEps))
        key("rope.freq_base", .float32(Float(config.ropeTheta)))
        key("rope.dimension_count", .uint32(UInt32(config.headSize)))
        return w
    }
}
