import ArgumentParser
import Datasets
import Foundation
import Kernels
import Models
import Tokenizers
import Training

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample completions from a model folder, checkpoint or GGUF file (batched, KV cache).",
        discussion: """
            Prints one JSON line per prompt: {"prompt", "completion", "tokens", "logprobs", "eos"}. With --chat, each \
            message \
            is sent as a user turn through the model's chat template and only the reply is printed, up to the \
            end-of-turn token.
            """)

    @Option(help: "Model folder or checkpoint (config.json + model.safetensors), or a GGUF file.")
    var model: String
    @Option(help: "Tokenizer: byte, a tokenizer.json or a GGUF file; default: the model's own.")
    var tokenizer: String?
    @Option(help: "A prompt (repeatable).")
    var prompt: [String] = []
    @Option(help: "A user message to answer through the model's chat template (repeatable; one conversation each).")
    var chat: [String] = []
    @Option(help: "JSONL file of {\"prompt\": …} lines.")
    var input: String?
    // A negative value after a space is read as the value (then refused), not as an unknown flag.
    @Option(parsing: .unconditional, help: "New tokens at most per prompt.")
    var maxNewTokens: Int = 32
    @Option(parsing: .unconditional, help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0
    @Option(parsing: .unconditional, help: "Keep the k most likely tokens (0: off).")
    var topK: Int = 0
    @Option(parsing: .unconditional, help: "Nucleus sampling mass (1: off).")
    var topP: Float = 1
    @Option(help: "Seed of the sampler.")
    var seed: UInt64 = 0
    @Option(parsing: .unconditional, help: "Prompts per batch.")
    var batchSize: Int = 16
    @Option(help: "A LoRA adapter folder in PEFT's format to apply on top of the model.")
    var adapter: String?

    func validate() throws {
        guard maxNewTokens >= 1 else {
            throw ValidationError("--max-new-tokens must be at least 1, got \(maxNewTokens)")
        }
        guard temperature >= 0, temperature.isFinite else {
            throw ValidationError("--temperature must be 0 (greedy) or positive, got \(temperature)")
        }
        guard topK >= 0 else { throw ValidationError("--top-k must be 0 (off) or positive, got \(topK)") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1], got \(topP)") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1, got \(batchSize)") }
    }

    func run() throws {
        let trunk = try HFCheckpoint.load(directory: model)
        let tok = try Tokenizers.load(tokenizer ?? model)
        log("generate: \(model); tokenizer \(tok.summary); \(BLAS.summary)")
        let lora = try adapter.map { try PEFTAdapter.load(directory: $0, modelConfig: trunk.config) }
        var prompts = prompt
        if let input { prompts += try JSONL.prompts(path: input).map(\.prompt) }
        guard prompts.isEmpty || chat.isEmpty else {
            throw CLIError("--chat cannot be combined with --prompt or --input")
        }
        guard !prompts.isEmpty || !chat.isEmpty else { throw CLIError("give --prompt, --input or --chat") }
        if !chat.isEmpty { return try reply(trunk: trunk, tokenizer: tok, adapter: lora) }
        let options = SamplingOptions(
            temperature: temperature, topK: topK, topP: topP, maxNewTokens: maxNewTokens,
            eosTokenId: tok.eosTokenId, stopTokenIds: tok.stopTokenIds, seed: seed)
        for start in stride(from: 0, to: prompts.count, by: max(batchSize, 1)) {
            let chunk = Array(prompts[start..<min(start + max(batchSize, 1), prompts.count)])
            let ids = chunk.map { SFTTokenization.promptTokens(SFTExample(prompt: $0, completion: ""), tokenizer: tok) }
            var batchOptions = options
            batchOptions.seed = seed &+ UInt64(start)
            let result = try trunk.generate(prompts: ids, adapter: lora, options: batchOptions)
            for (i, p) in chunk.enumerated() {
                printJSONLine([
                    "prompt": p, "completion": tok.decode(result.tokens[i], skipSpecialTokens: true),
                    "tokens": result.tokens[i].map(Int.init), "logprobs": result.logProbs[i].map(Double.init),
                    "eos": result.endedWithEOS[i],
                ])
            }
        }
    }
}

extension Generate {
    /// Each --chat message as a one-turn conversation, rendered with the generation prompt
    /// (the template writes any BOS itself), answered until the end-of-turn token.
    func reply(trunk: any CausalLM, tokenizer tok: any Tokenizer, adapter: LoRAAdapter?) throws {
        guard let formatter = tok.chat else {
            throw CLIError("--chat: the tokenizer (\(tok.summary)) has no chat template")
        }
        guard let eos = tok.eosTokenId else {
            throw CLIError("--chat: the tokenizer (\(tok.summary)) names no end-of-turn (EOS) token")
        }
        let texts = try chat.map { message in
            try formatter.render(
                [.object(JinjaObject([("role", .string("user")), ("content", .string(message))]))],
                addGenerationPrompt: true)
        }
        let options = SamplingOptions(
            temperature: temperature, topK: topK, topP: topP, maxNewTokens: maxNewTokens, eosTokenId: eos,
            stopTokenIds: tok.stopTokenIds, seed: seed)
        let result = try trunk.generate(prompts: texts.map { tok.encode($0) }, adapter: adapter, options: options)
        for (i, message) in chat.enumerated() {
            printJSONLine([
                "chat": message, "reply": tok.decode(result.tokens[i], skipSpecialTokens: true),
                "tokens": result.tokens[i].map(Int.init),
                "eos": result.endedWithEOS[i],
            ])
        }
    }
}

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show token ids: {\"text\": …} lines in, {\"ids\": [...]} lines out.")
    @Option(help: "byte, a tokenizer.json, or a folder holding one.")
    var tokenizer: String
    @Option(help: "JSONL file of {\"text\": …} lines, or - for standard input.")
    var input: String

    func run() throws {
        let tok = try Tokenizers.load(tokenizer)
        for (line, object) in try JSONL.objects(path: input) {
            guard let text = object["text"] as? String else {
                throw CLIError("\(input):\(line): missing string field 'text'")
            }
            printJSONLine(["ids": tok.encode(text).map(Int.init)])
        }
    }
}
