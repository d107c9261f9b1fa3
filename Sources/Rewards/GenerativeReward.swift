import Alignment
import Cluster
import Config
import Datasets
import Foundation
import Kernels
import Models
import Roles
import Tokenizers

/// A generative reward model (Shen et al. 2025, docs/algorithms.md §8.2): a language model prompted as
/// a judge with the question, the candidate and a reference answer; its score is the probability
/// of the "yes" token against "no", P(Y) / (P(Y) + P(N)), at the position after the prompt.
/// It is an SFT model trained on judgement data the task builds (`ArithTask.judgements`,
/// `rlhf data arith` → judge.jsonl).
public struct GenerativeReward: @unchecked Sendable {
    public static let yes = JudgePrompt.yes, no = JudgePrompt.no
    package let trunk: any CausalLM
    package let tokenizer: any Tokenizer
    package let yesId: Int32, noId: Int32

    public static func prompt(question: String, candidate: String, reference: String) -> String {
        JudgePrompt.prompt(question: question, candidate: candidate, reference: reference)
    }

    /// The judge in `directory`, its products in `precision` (its weights never change). Only
    /// scored, so it is kept in bf16 alone when the run is, and once per host: the host's first
    /// rank reads it and the others map its copy (`HostWeights`; `host` nil: this rank's own).
    public static func load(
        directory: String, precision: Precision = .fp32, host: (any Transport)? = nil
    ) async throws -> GenerativeReward {
        let trunk = try await HostWeights.frozen(
            host: host, precision: precision, config: { try HFCheckpoint.readConfig(directory: directory) },
            load: { try HFCheckpoint.load(directory: directory) })
        try await HostWeights.keepOnlyBF16(trunk, host: host)
        return try GenerativeReward(trunk: trunk, directory: directory)
    }

    init(trunk: any CausalLM, directory: String) throws {
        self.trunk = trunk
        tokenizer = try Tokenizers.load(directory)
        let y = tokenizer.encode(Self.yes), n = tokenizer.encode(Self.no)
        guard y.count == 1, n.count == 1 else {
            throw TrainingError(
                "\(directory): the judge's tokens \(Self.yes)/\(Self.no) must be single tokens of its tokenizer")
        }
        yesId = y[0]
        noId = n[0]
    }

    /// P(Y) / (P(Y) + P(N)) for each (question, candidate, reference).
    public func scores(_ items: [(question: String, candidate: String, reference: String)]) throws -> [Double] {
        var out: [Double] = []
        for start in stride(from: 0, to: items.count, by: 64) {
            let part = items[start..<min(start + 64, items.count)]
            let sequences = part.map {
                tokenizer.encodeWithPrefix(
                    Self.prompt(question: $0.question, candidate: $0.candidate, reference: $0.reference))
            }
            let v = trunk.config.vocabSize
            // [N, C]; a prompt over the context is an error naming its length
            let last = try trunk.lastHidden(sequences)
            let cache = LMHeadCache(rows: sequences.count, vocab: v)
            withExtendedLifetime(last) { trunk.lmHeadLogits(hidden: last.pointer, rows: sequences.count, cache: cache) }
            for r in 0..<sequences.count {
                let ly = Double(cache.logits[r * v + Int(yesId)]), ln = Double(cache.logits[r * v + Int(noId)])
                out.append(1 / (1 + Foundation.exp(ln - ly)))
            }
        }
        return out
    }
}
