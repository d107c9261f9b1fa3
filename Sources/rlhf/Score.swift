import ArgumentParser
import Datasets
import Foundation
import Kernels
import Models
import Training

struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Log-likelihood scoring: log-probs of tokens[1...] given the tokens before them.",
        discussion: """
            Reads JSON lines {"tokens": [ids…]} and prints, per line, {"logprobs": [...], "sum": x}, where \
            logprobs[i] = log p(tokens[i+1] | tokens[0...i]).
            """)

    @Option(help: "Model folder (config.json + model.safetensors) or GGUF file.")
    var model: String

    @Option(help: "JSONL file of {\"tokens\": [...]} lines, or - for standard input.")
    var input: String

    // A negative value after a space is read as the value (then refused), not as an unknown flag.
    @Option(parsing: .unconditional, help: "Sequences per forward pass.")
    var batchSize: Int = 8

    func validate() throws {
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1, got \(batchSize)") }
    }

    @Option(help: "A LoRA adapter folder in PEFT's format to apply on top of the model.")
    var adapter: String?

    func run() throws {
        let trunk = try HFCheckpoint.load(directory: model)
        log(
            "score: \(model) (\(trunk.config.layers) layers, \(trunk.config.channels) wide, vocab "
                + "\(trunk.config.vocabSize)); \(BLAS.summary)"
        )
        let sequences = try Self.readTokenLines(path: input, vocabSize: trunk.config.vocabSize)
        let lora = try adapter.map { try PEFTAdapter.load(directory: $0, modelConfig: trunk.config) }
        if let adapter, let lora {
            log(
                "adapter: \(adapter) (rank \(lora.config.rank), α \(lora.config.alpha), "
                    + "\(lora.config.targets.map(\.name).joined(separator: ", ")))"
            )
        }
        let results = try trunk.scoreSequences(sequences, adapter: lora, batchSize: batchSize)
        for logProbs in results {
            let sum = logProbs.reduce(0.0) { $0 + Double($1) }
            printJSONLine(["logprobs": logProbs.map(Double.init), "sum": sum])
        }
    }

    /// Parses {"tokens": [...]} lines; every bad line is an error naming file and line.
    static func readTokenLines(path: String, vocabSize: Int) throws -> [[Int32]] {
        try JSONL.objects(path: path).map { line, object in
            let place = "\(path):\(line)"
            guard let raw = object["tokens"] as? [Any] else { throw CLIError("\(place): missing \"tokens\" array") }
            let ids = try raw.map { value -> Int32 in
                guard let id = value as? Int, id >= 0, id < vocabSize else {
                    throw CLIError("\(place): token \(value) is not an id in 0..<\(vocabSize)")
                }
                return Int32(id)
            }
            guard !ids.isEmpty else { throw CLIError("\(place): \"tokens\" is empty") }
            return ids
        }
    }
}
