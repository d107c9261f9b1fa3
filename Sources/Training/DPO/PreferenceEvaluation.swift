import Datasets
import Foundation
import Kernels
import Models
import Tokenizers

/// Held-out evaluation of a preference-trained policy against its reference: exact match of
/// greedy generation (and, for InSPO, of generation conditioned on the model's own draft),
/// implicit-reward accuracy on held-out pairs, and KL to the reference on the policy's samples.
struct PreferenceEvaluator {
    let policy: any CausalLM, adapter: LoRAAdapter?, reference: any CausalLM
    let tokenizer: any Tokenizer
    let evalPairs: [TokenizedPair]
    let referenceSums: [DPOStage.ReferenceSums]
    let evalExamples: [SFTExample]
    let maxLength: Int, beta: Double, maxNewTokens: Int, conditioned: Bool
    let klTemperature: Float, seed: UInt64
    let chunk = 32  // the reference cache's chunking, so equal weights give bit-equal sums

    init(
        policy: any CausalLM, adapter: LoRAAdapter?, reference: any CausalLM, tokenizer: any Tokenizer,
        evalPairs: [TokenizedPair],
        referenceSums: [DPOStage.ReferenceSums], evalExamples: [SFTExample], maxLength: Int, beta: Double,
        maxNewTokens: Int,
        conditioned: Bool, klTemperature: Float, seed: UInt64
    ) {
        self.policy = policy
        self.adapter = adapter
        self.reference = reference
        self.tokenizer = tokenizer
        self.evalPairs = evalPairs
        self.referenceSums = referenceSums
        self.evalExamples = evalExamples
        self.maxLength = maxLength
        self.beta = beta
        self.maxNewTokens = maxNewTokens
        self.conditioned = conditioned
        self.klTemperature = klTemperature
        self.seed = seed
    }

    func run() throws -> PreferenceEval {
        var e = PreferenceEval()
        let answered = evalExamples.filter { $0.answer != nil }
        if !answered.isEmpty {
            let prompts = answered.map { SFTTokenization.promptTokens($0, tokenizer: tokenizer) }
            let drafts = try greedy(prompts)
            e.exactMatch = exactMatch(drafts, answered)
            if conditioned {
                // Second pass: the model sees its own draft as the alternative response (§6.4).
                let eos = tokenizer.eosTokenId
                let reflective = zip(prompts, drafts).map { p, d in p + d + (eos.map { d.last == $0 ? [] : [$0] } ?? [])
                }
                e.conditionedExactMatch = exactMatch(try greedy(reflective), answered)
            }
        }
        if !evalPairs.isEmpty {
            var correct = 0
            for start in stride(from: 0, to: evalPairs.count, by: chunk) {
                let pairs = Array(evalPairs[start..<min(start + chunk, evalPairs.count)])
                let sums = try policy.responseLogProbSums(
                    PreferenceBatch(pairs, kinds: [.chosen, .rejected]), adapter: adapter)
                for i in pairs.indices {
                    let ref = referenceSums[start + i]
                    if beta * (sums[2 * i] - ref.chosen) > beta * (sums[2 * i + 1] - ref.rejected) { correct += 1 }
                }
            }
            e.rewardAccuracy = Double(correct) / Double(evalPairs.count)
        }
        // Prompts for KL: the held-out prompts with answers, else those of the held-out pairs.
        let prompts =
            !evalExamples.isEmpty
            ? evalExamples.map { SFTTokenization.promptTokens($0, tokenizer: tokenizer) } : evalPairs.map(\.prompt)
        if !prompts.isEmpty { e.kl = try klToReference(prompts) }
        return e
    }

    func greedy(_ prompts: [[Int32]]) throws -> [[Int32]] {
        var out: [[Int32]] = []
        for start in stride(from: 0, to: prompts.count, by: chunk) {
            out += try policy.generate(
                prompts: Array(prompts[start..<min(start + chunk, prompts.count)]), adapter: adapter,
                options: .greedy(
                    maxNewTokens: maxNewTokens, eosTokenId: tokenizer.eosTokenId, stopTokenIds: tokenizer.stopTokenIds)
            ).tokens
        }
        return out
    }

    func exactMatch(_ outputs: [[Int32]], _ examples: [SFTExample]) -> Double {
        let correct = zip(outputs, examples).filter { tokens, example in
            tokenizer.decode(tokens, skipSpecialTokens: true).trimmingCharacters(in: .whitespacesAndNewlines)
                == example.answer!.trimmingCharacters(in: .whitespacesAndNewlines)
        }.count
        return Double(correct) / Double(examples.count)
    }

    /// E_{y∼π}[Σ_t log π(y_t|·) − log π_ref(y_t|·)], the same seed at every evaluation so that
    /// successive values differ only through the policy.
    func klToReference(_ prompts: [[Int32]]) throws -> Double {
        var total = 0.0
        for start in stride(from: 0, to: prompts.count, by: chunk) {
            let batchPrompts = Array(prompts[start..<min(start + chunk, prompts.count)])
            let samples = try policy.generate(
                prompts: batchPrompts, adapter: adapter,
                options: SamplingOptions(
                    temperature: klTemperature, maxNewTokens: maxNewTokens,
                    eosTokenId: tokenizer.eosTokenId, stopTokenIds: tokenizer.stopTokenIds,
                    seed: seed &+ 0xC1 &+ UInt64(start))
            ).tokens
            let pairs = zip(batchPrompts, samples).filter { !$0.1.isEmpty }.map {
                TokenizedPair(prompt: $0.0, chosen: $0.1, rejected: $0.1)
            }
            guard !pairs.isEmpty else { continue }
            let batch = PreferenceBatch(pairs, kinds: [.chosen])
            let mine = try policy.responseLogProbSums(batch, adapter: adapter)
            let theirs = try reference.responseLogProbSums(batch, adapter: nil)
            total += zip(mine, theirs).reduce(0) { $0 + $1.0 - $1.1 }
        }
        return total / Double(prompts.count)
    }
}
