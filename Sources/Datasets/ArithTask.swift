import Foundation
import Kernels

/// The demonstrator's systematic habit on sums whose units column carries.
public enum ArithFlaw: String, Sendable, CaseIterable {
    /// Forgets the carry from the units column: 17+25 → 32 (the answer minus 10).
    case dropCarry = "drop_carry"
    /// Off by one, up or down at random.
    case offByOne = "off_by_one"
    /// Any wrong number in 0…198.
    case random
}

/// The built-in arithmetic task: "a+b=" → "c" with a, b in 0…99. A flawed demonstrator gets a
/// share of the carrying sums wrong in one systematic way, so imitation learns the habit (the
/// flawed answer becomes the mode on those prompts) and only feedback can remove it.
public struct ArithTask: Sendable {
    public struct Problem: Hashable, Sendable { public let a: Int, b: Int }
    public let seed: UInt64, flaw: ArithFlaw, flawShare: Double
    public let train: [Problem], eval: [Problem]

    public init(seed: UInt64, flaw: ArithFlaw = .dropCarry, flawShare: Double = 0.6, evalSize: Int = 500) {
        self.seed = seed
        self.flaw = flaw
        self.flawShare = flawShare
        var rng = RNG(seed: seed)
        var all = (0..<100).flatMap { a in (0..<100).map { Problem(a: a, b: $0) } }
        shuffle(&all, &rng)
        let n = min(max(evalSize, 0), all.count)
        eval = Array(all.prefix(n))
        train = Array(all.dropFirst(n))
    }

    public static func prompt(_ p: Problem) -> String { "\(p.a)+\(p.b)=" }
    public static func answer(_ p: Problem) -> String { String(p.a + p.b) }
    public static func carries(_ p: Problem) -> Bool { p.a % 10 + p.b % 10 >= 10 }

    /// A wrong answer of the chosen kind (also used as the rejected side of preference pairs).
    public func flawed(_ p: Problem, rng: inout RNG) -> String {
        let correct = p.a + p.b
        switch flaw {
        case .dropCarry where ArithTask.carries(p): return String(correct - 10)
        case .dropCarry, .offByOne: return String(correct == 0 || rng.next() % 2 == 0 ? correct + 1 : correct - 1)
        case .random:
            var wrong = Int(rng.next() % 198)
            if wrong >= correct { wrong += 1 }
            return String(wrong)
        }
    }

    /// The demonstrations: every training problem once, answered by the flawed demonstrator.
    public func sftExamples() -> [SFTExample] {
        var rng = RNG(seed: seed &+ 1)
        return train.map { p in
            let wrong = ArithTask.carries(p) && Double(rng.uniform()) < flawShare
            return SFTExample(
                prompt: ArithTask.prompt(p), completion: wrong ? flawed(p, rng: &rng) : ArithTask.answer(p),
                answer: ArithTask.answer(p), source: "arith:\(p.a)+\(p.b)")
        }
    }

    /// Held-out problems with correct completions (eval loss and exact match).
    public func evalExamples() -> [SFTExample] {
        eval.map {
            SFTExample(
                prompt: ArithTask.prompt($0), completion: ArithTask.answer($0), answer: ArithTask.answer($0),
                source: "arith-eval:\($0.a)+\($0.b)")
        }
    }

    /// Correct ≻ flawed (the demonstrator's habit where it applies, otherwise another wrong answer).
    public func preferencePairs(_ problems: [Problem], salt: UInt64) -> [[String: Any]] {
        var rng = RNG(seed: seed &+ salt)
        return problems.map { p in
            [
                "prompt": ArithTask.prompt(p), "chosen": ArithTask.answer(p), "rejected": flawed(p, rng: &rng),
                "task": "arith",
            ]
        }
    }

    /// The task's pairs as typed examples: `train` (salt 2) or held-out `eval` (salt 3) problems,
    /// the same pairs prefs.jsonl and eval_prefs.jsonl hold.
    public func preferenceExamples(eval held: Bool) -> [PreferenceExample] {
        let name = held ? "arith-eval-prefs" : "arith-prefs"
        return preferencePairs(held ? eval : train, salt: held ? 3 : 2).enumerated().map { i, o in
            PreferenceExample(
                prompt: o["prompt"] as! String, chosen: o["chosen"] as! String, rejected: o["rejected"] as! String,
                margin: nil, openEnded: nil, task: "arith", source: "\(name):\(i + 1)")
        }
    }

    /// Writes sft.jsonl, prefs.jsonl, prompts.jsonl, eval.jsonl, eval_prefs.jsonl and the generative
    /// reward model's judge.jsonl, eval_judge.jsonl into `directory`.
    public func write(to directory: String) throws -> [String] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
        let files: [(String, [[String: Any]])] = [
            (
                "sft.jsonl",
                sftExamples().map { ["prompt": $0.prompt, "completion": $0.completion, "answer": $0.answer!] }
            ),
            ("prefs.jsonl", preferencePairs(train, salt: 2)),
            (
                "prompts.jsonl",
                train.map { ["prompt": ArithTask.prompt($0), "answer": ArithTask.answer($0), "task": "arith"] }
            ),
            (
                "eval.jsonl",
                evalExamples().map { ["prompt": $0.prompt, "completion": $0.completion, "answer": $0.answer!] }
            ),
            ("eval_prefs.jsonl", preferencePairs(eval, salt: 3)),
            ("judge.jsonl", judgements(train, salt: 4)),
            ("eval_judge.jsonl", judgements(eval, salt: 5)),
        ]
        for (name, objects) in files { try JSONL.write(objects, to: path(name)) }
        return files.map { path($0.0) }
    }
}
