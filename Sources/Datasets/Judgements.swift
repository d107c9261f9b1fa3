import Foundation
import Kernels

/// The generative reward model's judging format (Shen et al. 2025, docs/algorithms.md §8.2): the judge
/// reads "<question><candidate>|<reference>?" and answers Y (they agree) or N.
public enum JudgePrompt {
    public static let yes = "Y", no = "N"
    /// No separator is needed for the byte tokenizer; '|' and '?' never occur in answers.
    public static func prompt(question: String, candidate: String, reference: String) -> String {
        "\(question)\(candidate.trimmingCharacters(in: .whitespacesAndNewlines))|\(reference)?"
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
            return [
                "prompt": JudgePrompt.prompt(question: ArithTask.prompt(p), candidate: candidate, reference: answer),
                "completion": agree ? JudgePrompt.yes : JudgePrompt.no,
                "answer": agree ? JudgePrompt.yes : JudgePrompt.no,
            ]
        }
    }
}
