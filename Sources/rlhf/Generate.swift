import ArgumentParser
import Datasets
import Foundation
import Kernels
import Models
import Tokenizers
import Training

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample completions from a model folder or checkpoint (batched, KV cache).",
        discussion: "Prints one JSON line per prompt: {\"prompt\", \"completion\", \"tokens\", \"logprobs\", \"eos\"}.")

    @Option(help: "Model folder or checkpoint (config.json + model.safetensors).")
    var model: String
    @Option(help: "Tokenizer: byte, or a tokenizer.json; default: the one in the model folder.")
    var tokenizer: String?
    @Option(help: "A prompt (repeatable).")
    var prompt: [String] = []
    @Option(help: "JSONL file of {\"prompt\": …} lines.")
    var input: String?
    @Option(help: "New tokens at most per prompt.")
    var maxNewTokens: Int = 32
    @Option(help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0
    @Option(help: "Keep the k most likely tokens (0: off).")
    var topK: Int = 0
    @Option(help: "Nucleus sampling mass (1: off).")
    var topP: Float = 1
    @Option(help: "Seed of the sampler.")
    var seed: UInt64 = 0
    @Option(help: "Prompts per batch.")
    var batchSize: Int = 16
    @Option(help: "A LoRA adapter folder in PEFT's format to apply on top of the model.")
    var adapter: String?

    func run() throws {
        let trunk = try HFCheckpoint.load(directory: model)
        let tok = try Tokenizers.load(tokenizer ?? model)
        log("generate: \(model); tokenizer \(tok.summary); \(BLAS.summary)")
        let lora = try adapter.map { try PEFTAdapter.load(directory: $0, modelConfig: trunk.config) }
        var prompts = prompt
        if let input { prompts += try JSONL.prompts(path: input).map(\.prompt) }
        guard !prompts.isEmpty else { throw CLIError("give --prompt or --input") }
        let options = SamplingOptions(temperature: temperature, topK: topK, topP: topP, maxNewTokens: maxNewTokens,
                                      eosTokenId: tok.eosTokenId, seed: seed)
        for start in stride(from: 0, to: prompts.count, by: max(batchSize, 1)) {
            let chunk = Array(prompts[start..<min(start + max(batchSize, 1), prompts.count)])
            let ids = chunk.map { SFTTokenization.promptTokens(SFTExample(prompt: $0, completion: ""), tokenizer: tok) }
            var batchOptions = options
            batchOptions.seed = seed &+ UInt64(start)
            let result = try trunk.generate(prompts: ids, adapter: lora, options: batchOptions)
            for (i, p) in chunk.enumerated() {
                printJSONLine(["prompt": p, "completion": tok.decode(result.tokens[i], skipSpecialTokens: true),
                               "tokens": result.tokens[i].map(Int.init), "logprobs": result.logProbs[i].map(Double.init),
                               "eos": result.endedWithEOS[i]])
            }
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
            guard let text = object["text"] as? String else { throw CLIError("\(input):\(line): missing string field 'text'") }
            printJSONLine(["ids": tok.encode(text).map(Int.init)])
        }
    }
}
