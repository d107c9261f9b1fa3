import Alignment
import Foundation
import Kernels
import Models
import Roles
import Tokenizers

/// A generative reward model (Shen et al. 2025, algorithms.md §8.2): a language model prompted as
/// a judge with the question, the candidate and a reference answer; its score is the probability
/// of the "yes" token against "no", P(Y) / (P(Y) + P(N)), at the position after the prompt.
/// It is an SFT model trained on judgement data the task builds (`ArithTask.judgements`,
/// `rlhf data arith` → judge.jsonl).
public struct GenerativeReward: @unchecked Sendable {
    public static let yes = "Y", no = "N"
    let trunk: any CausalLM
    let tokenizer: any Tokenizer
    let yesId: Int32, noId: Int32

    /// The judge's prompt: "<question><candidate>|<reference>?" (no separator is needed for the
    /// byte tokenizer; '|' and '?' never occur in answers).
    public static func prompt(question: String, candidate: String, reference: String) -> String {
        "\(question)\(candidate.trimmingCharacters(in: .whitespacesAndNewlines))|\(reference)?"
    }

    public init(directory: String) throws {
        trunk = try HFCheckpoint.load(directory: directory)
        tokenizer = try Tokenizers.load(directory)
        let y = tokenizer.encode(Self.yes), n = tokenizer.encode(Self.no)
        guard y.count == 1, n.count == 1 else { throw TrainingError("\(directory): the judge's tokens \(Self.yes)/\(Self.no) must be single tokens of its tokenizer") }
        yesId = y[0]; noId = n[0]
    }

    /// P(Y) / (P(Y) + P(N)) for each (question, candidate, reference).
    public func scores(_ items: [(question: String, candidate: String, reference: String)]) throws -> [Double] {
        var out: [Double] = []
        for start in stride(from: 0, to: items.count, by: 64) {
            let part = items[start..<min(start + 64, items.count)]
            let sequences = part.map { (tokenizer.bosTokenId.map { [$0] } ?? []) + tokenizer.encode(Self.prompt(question: $0.question, candidate: $0.candidate, reference: $0.reference)) }
            let v = trunk.config.vocabSize
            let last = try trunk.lastHidden(sequences)   // [N, C]; a prompt over the context is an error naming its length
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

extension ArithTask {
    /// Judgement demonstrations for the generative reward model: for each problem a candidate —
    /// the answer (half the time) or a wrong one of the demonstrator's kind, off by one, or random —
    /// against the reference answer; completion Y when they agree, else N (also the "answer", so SFT's
    /// exact match is the judge's accuracy).
    public func judgements(_ problems: [Problem], salt: UInt64) -> [[String: Any]] {
        var rng = RNG(seed: seed &+ salt)
        return problems.map { p in
            let answer = ArithTask.answer(p)
            var candidate = answer
            if rng.next() % 2 == 0 {
                switch rng.next() % 3 {
                case 0: candidate = flawed(p, rng: &rng)
                case 1: candidate = String(p.a + p.b + (rng.next() % 2 == 0 ? 1 : -1))
                default: candidate = String(Int(rng.next() % 199))
                }
            }
            let agree = candidate == answer
            return ["prompt": GenerativeReward.prompt(question: ArithTask.prompt(p), candidate: candidate, reference: answer),
                    "completion": agree ? GenerativeReward.yes : GenerativeReward.no, "answer": agree ? GenerativeReward.yes : GenerativeReward.no]
        }
    }
}
