import ArgumentParser
import Foundation
import GGUF
import Kernels
import Models
import Runs
import Tokenizers

/// What `rlhf export --format` writes.
enum ExportFormat: String, ExpressibleByArgument, CaseIterable {
    case gguf, hf
}

/// The tensor types a GGUF export can use.
enum ExportType: String, ExpressibleByArgument, CaseIterable {
    case f32, f16, q8_0
    var ggml: GGMLType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .q8_0: return .q8_0
        }
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Write a model (with a LoRA adapter merged in) as a GGUF file for llama.cpp / Ollama, or as a merged "
            + "Hugging Face folder.",
        discussion: """
            GGUF: Llama-family models (llama, qwen2, mistral) in F32, F16 or Q8_0, with the tokenizer as \
            tokenizer.ggml metadata \
            and the chat template; norms and biases stay F32. HF: config.json, model.safetensors (F32) and the \
            tokenizer files. \
            Prints one JSON line: {"out", "format", "type", "tensors", "bytes", "f16_fallback"}.
            """)

    @Option(help: "Model folder, checkpoint or GGUF file.")
    var model: String
    @Option(help: "A LoRA adapter folder (PEFT's format) to merge into the weights.")
    var adapter: String?
    @Option(
        help: "Tokenizer to include: byte, a tokenizer.json, a folder, a GGUF file, or none; default: the model's own.")
    var tokenizer: String?
    @Option(help: "gguf or hf.")
    var format: ExportFormat
    @Option(help: "GGUF tensor type: f32, f16 or q8_0 (hf: f32 only).")
    var type: ExportType = .f32
    @Option(help: "The GGUF file, or the folder for hf.")
    var out: String
    @Option(help: "general.name written into a GGUF file (default: the output file's name).")
    var name: String?

    func validate() throws {
        if format == .hf && type != .f32 {
            throw ValidationError("--format hf writes F32 safetensors; --type \(type.rawValue) applies to gguf only")
        }
    }

    func run() throws {
        let base = try HFCheckpoint.load(directory: model)
        // `none`: the weights alone (llama.cpp needs a tokenizer to run the file; transformers does not).
        let tok = tokenizer == "none" ? nil : try Tokenizers.load(tokenizer ?? model)
        var merged = base
        if let adapter {
            let lora = try PEFTAdapter.load(directory: adapter, modelConfig: base.config)
            merged = try base.merging(lora)
            log(
                "export: merged \(adapter) (rank \(lora.config.rank), α \(lora.config.alpha), "
                    + "\(lora.config.targets.map(\.name).joined(separator: ", ")))"
            )
        }
        switch format {
        case .hf: try exportHF(merged, tokenizer: tok)
        case .gguf: try exportGGUF(merged, tokenizer: tok)
        }
    }

    /// A Hugging Face folder: config.json, model.safetensors (F32) and the tokenizer.
    func exportHF(_ merged: any CausalLM, tokenizer tok: (any Tokenizer)?) throws {
        try HFCheckpoint.save(merged, directory: out)
        if let bpe = tok as? BPETokenizer {
            try bpe.save(into: out)
        } else if tok != nil {
            try ByteTokenizer.markerContents.write(
                toFile: (out as NSString).appendingPathComponent(ByteTokenizer.markerFile), atomically: true,
                encoding: .utf8)
        }
        try exportCard().write(into: out)
        printJSONLine([
            "out": out, "format": "hf", "type": "f32", "tensors": merged.parameterLayout.tensors.count,
            "f16_fallback": [String](),
        ])
    }

    /// The exported folder's card: the base model, and the card of the adapter merged in, if it has one.
    func exportCard() -> ModelCard {
        let title = name ?? (out as NSString).lastPathComponent
        var card = ModelCard(
            title: title, baseModel: model, library: "transformers",
            method: adapter.map { "the LoRA adapter \($0) merged into the weights (rlhf export)" } ?? "rlhf export",
            data: adapter == nil ? "none (the base model's weights)" : "see the adapter's card below")
        if let adapter,
            let text = try? String(
                contentsOfFile: (adapter as NSString).appendingPathComponent("README.md"), encoding: .utf8)
        {
            card.appendix = "## The adapter's card\n\n" + text
        }
        return card
    }

    /// A GGUF file llama.cpp runs, with the tokenizer as tokenizer.ggml metadata.
    func exportGGUF(_ merged: any CausalLM, tokenizer tok: (any Tokenizer)?) throws {
        let title = name ?? ((out as NSString).lastPathComponent as NSString).deletingPathExtension
        var (writer, f16Fallback) = try GGUFExport.writer(model: merged, type: type.ggml, name: title)
        if let tok {
            guard tok.vocabSize <= merged.config.vocabSize else {
                throw CLIError(
                    "the tokenizer has \(tok.vocabSize) ids but the model's vocabulary is "
                        + "\(merged.config.vocabSize)"
                )
            }
            for (key, value) in try GGUFTokenizer.metadata(for: tok, vocabSize: merged.config.vocabSize) {
                writer.set(key, value)
            }
        } else {
            writer.set("tokenizer.ggml.model", .string("none"))  // llama.cpp's "no vocabulary"
            log(
                "export: no tokenizer written (--tokenizer none): llama.cpp loads the weights but cannot "
                    + "tokenize text"
            )
        }
        try writer.write(to: out)
        if !f16Fallback.isEmpty {
            log(
                "export: \(f16Fallback.count) matrices written as F16 (rows not whole \(type.rawValue) blocks): "
                    + "\(f16Fallback.prefix(4).joined(separator: ", "))"
            )
        }
        let bytes = ((try? FileManager.default.attributesOfItem(atPath: out))?[.size] as? Int) ?? 0
        printJSONLine([
            "out": out, "format": "gguf", "type": type.rawValue, "tensors": merged.parameterLayout.tensors.count,
            "bytes": bytes,
            "f16_fallback": f16Fallback,
        ])
    }
}
