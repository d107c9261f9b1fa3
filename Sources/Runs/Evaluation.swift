import Datasets
import Foundation
import Kernels
import Models
import Tokenizers

/// Held-out evaluation of a language model: mean loss per completion token and, when the
/// examples carry answers, exact match of greedy decoding (the decoded text, trimmed, equals
/// the answer).
public struct EvalResult: Sendable, Equatable {
    public var loss: Double
    public var exactMatch: Double?
    public var examples: Int

    public init(loss: Double, exactMatch: Double?, examples: Int) {
        self.loss = loss
        self.exactMatch = exactMatch
        self.examples = examples
    }
}

public enum Evaluation {
    public static func run(
        trunk: any CausalLM, adapter: LoRAAdapter? = nil, examples: [SFTExample], tokenizer: any Tokenizer,
        maxLength: Int, maxNewTokens: Int, batchSize: Int, responseText: (([Int32]) -> String)? = nil
    ) throws -> EvalResult {
        precondition(!examples.isEmpty, "evaluation needs examples")
        let tokenized = try examples.map {
            try SFTTokenization.tokenize($0, tokenizer: tokenizer, maxLength: maxLength)
        }
        var lossSum = 0.0, lossTokens = 0
        var steps: [String: LanguageModelStep] = [:]
        for start in stride(from: 0, to: tokenized.count, by: batchSize) {
            let batch = MicroBatch(Array(tokenized[start..<min(start + batchSize, tokenized.count)]))
            let key = "\(batch.batch)x\(batch.length)"
            let step =
                steps[key]
                ?? LanguageModelStep(
                    trunk: trunk, batch: batch.batch, tokens: batch.length, loraRank: adapter?.config.rank ?? 0)
            steps[key] = step
            let mean = try step.run(tokens: batch.tokens, targets: batch.targets, adapter: adapter)
            lossSum += Double(mean) * Double(batch.lossTokens)
            lossTokens += batch.lossTokens
        }
        var exact: Double?
        if examples.allSatisfy({ $0.answer != nil }) {
            var correct = 0
            for start in stride(from: 0, to: examples.count, by: batchSize) {
                let chunk = Array(examples[start..<min(start + batchSize, examples.count)])
                let prompts = chunk.map { SFTTokenization.promptTokens($0, tokenizer: tokenizer) }
                let result = try trunk.generate(
                    prompts: prompts, adapter: adapter,
                    options: .greedy(
                        maxNewTokens: maxNewTokens, eosTokenId: tokenizer.eosTokenId,
                        stopTokenIds: tokenizer.stopTokenIds))
                for (example, tokens) in zip(chunk, result.tokens) {
                    // `responseText`: as training reads a response (PPO: cut at its stop strings).
                    let text = (responseText ?? { tokenizer.decode($0, skipSpecialTokens: true) })(tokens)
                        .trimmingCharacters(in: .whitespacesAndNewlines)
                    if text == example.answer!.trimmingCharacters(in: .whitespacesAndNewlines) { correct += 1 }
                }
            }
            exact = Double(correct) / Double(examples.count)
        }
        return EvalResult(loss: lossSum / Double(max(lossTokens, 1)), exactMatch: exact, examples: examples.count)
    }
}
