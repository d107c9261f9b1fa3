import Foundation
import Kernels

/// The built-in reward-collapse task (Song et al. 2023, arXiv 2305.17608; docs/algorithms.md §3.2):
/// rankings of K responses for two kinds of prompt, for `rlhf rm` with `rm.utility`.
/// - closed ("a+b="): one right answer; the ranking is the correct sum, then K − 1 wrong sums
///   nearest first (a reward model should polarise: the right one high, the rest low);
/// - open-ended ("any L..H:"): every response is a valid number in the range, ranked by a
///   consistent taste, larger first (a reward model should spread them).
/// Under one utility for both, the optimal rewards of a K-ranking are the same for every prompt —
/// the collapse; the prompt-aware `adaptive` utility keeps the classes apart.
public struct CollapseTask: Sendable {
    public let seed: UInt64, responses: Int
    public let train: [PreferenceExample], eval: [PreferenceExample]

    /// `prompts` training prompts and `evalPrompts` held-out ones, half of each open-ended;
    /// 2…20 responses per ranking (a range in 0…99 holds distinct numbers for at most that many).
    public init(seed: UInt64, responses: Int = 6, prompts: Int = 2000, evalPrompts: Int = 200) {
        self.seed = seed
        self.responses = min(max(responses, 2), 20)
        let arith = ArithTask(seed: seed, evalSize: 500)
        var rng = RNG(seed: seed &+ 0xC011)
        train = Self.examples(
            count: prompts, problems: arith.train, responses: self.responses, rng: &rng, source: "collapse")
        eval = Self.examples(
            count: evalPrompts, problems: arith.eval, responses: self.responses, rng: &rng, source: "collapse-eval")
    }

    static func examples(count: Int, problems: [ArithTask.Problem], responses k: Int, rng: inout RNG, source: String)
        -> [PreferenceExample]
    {
        (0..<count).map { i in
            let ranked: [String], prompt: String, open = i % 2 == 1
            if open {
                // A range wide enough for K distinct numbers; K of them, larger first.
                let low = Int(rng.next() % UInt64(100 - 2 * k)),
                    high = low + 2 * k + Int(rng.next() % UInt64(100 - low - 2 * k))
                var picks = Set<Int>()
                while picks.count < k { picks.insert(low + Int(rng.next() % UInt64(high - low + 1))) }
                prompt = "any \(low)..\(high):"
                ranked = picks.sorted(by: >).map(String.init)
            } else {
                let p = problems[(i / 2) % problems.count], correct = p.a + p.b
                // K − 1 distinct wrong sums within ±(2K) of the answer, nearest first (ties: below first).
                var wrong = Set<Int>()
                while wrong.count < k - 1 {
                    let offset = 1 + Int(rng.next() % UInt64(2 * k))
                    let w = rng.next() % 2 == 0 || correct - offset < 0 ? correct + offset : correct - offset
                    wrong.insert(w)
                }
                prompt = ArithTask.prompt(p)
                ranked =
                    [String(correct)]
                    + wrong.sorted { (abs($0 - correct), $0) < (abs($1 - correct), $1) }.map(String.init)
            }
            return PreferenceExample(
                prompt: prompt, chosen: ranked[0], rejected: ranked[k - 1], margin: nil, openEnded: open,
                task: open ? "open" : "arith", source: "\(source):\(i + 1)", ranked: ranked)
        }
    }
}
