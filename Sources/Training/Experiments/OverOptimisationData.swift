import Alignment
import Config
import Datasets
import Foundation
import Kernels
import Models
import Runs
import Tokenizers

/// The over-optimisation study's data: gold-labelled pairs of the SFT policy's samples for the
/// proxies, and the hybrid reward's routed prompts and judgements.
extension OverOptimisation {
    /// The gold reward: 1 for the exact answer, −1 for anything but a bare integer.
    static func gold(_ response: String, answer: String) -> Double {
        ExactAnswerVerifier().score(response: response, answer: answer)
            + IntegerFormatVerifier().score(response: response, answer: nil)
    }

    /// The hybrid study's data: judgements for the GenRM, prompts with tasks routed by
    /// study.verifier_share and study.reference_share, and the held-out set.
    static func writeHybridData(_ task: ArithTask, study: Settings, seed: UInt64, folder: String) throws {
        try JSONL.write(task.judgements(task.train, salt: 4), to: "\(folder)/judge.jsonl")
        try JSONL.write(task.judgements(task.eval, salt: 5), to: "\(folder)/eval_judge.jsonl")
        var rng = RNG(seed: seed &+ 0x4B)
        let v = study.verifierShare, r = study.referenceShare
        try JSONL.write(
            task.train.map { p in
                let u = rng.uniformDouble()
                return [
                    "prompt": ArithTask.prompt(p), "answer": ArithTask.answer(p),
                    "task": u < v ? "arith" : u < v + r ? "arith-ref" : "arith-open",
                ]
            }, to: "\(folder)/prompts.jsonl")
        try JSONL.write(
            task.evalExamples().map { ["prompt": $0.prompt, "completion": $0.completion, "answer": $0.answer ?? ""] },
            to: "\(folder)/eval.jsonl")
    }

    /// For each proxy: `study.pairs` prompts (its own seeded draw), two sampled SFT responses each,
    /// the pair ordered by the gold reward (ties redrawn up to 8 times, then skipped) and flipped
    /// with probability `study.noise`.
    static func writeGoldPairs(
        _ study: Settings, task: ArithTask, seed: UInt64, maxNewTokens maxNew: Int, sftModel: String, files: [String],
        say: (String) -> Void
    ) throws {
        guard !task.train.isEmpty else {
            throw ConfigError(
                "'data.eval_size' (\(task.eval.count)) holds out every arith problem: no training prompts are left "
                    + "for the gold pairs"
            )
        }
        let trunk = try HFCheckpoint.load(directory: sftModel)
        let tokenizer = try Tokenizers.load(sftModel)
        let noise = study.noise
        for (k, file) in files.enumerated() {
            var rng = RNG(seed: seed &+ 0x601D &+ UInt64(k) &* 7919)
            var lines: [[String: Any]] = [], flipped = 0, skipped = 0
            var attempt = 0
            while lines.count < study.pairs && attempt < 20 * study.pairs {
                attempt += 1
                let problem = task.train[Int(rng.next() % UInt64(task.train.count))]
                let prompt = ArithTask.prompt(problem), answer = ArithTask.answer(problem)
                let tokens = tokenizer.encodeWithPrefix(prompt)
                var pair: (String, String, Double, Double)?
                for _ in 0..<8 {
                    let out = try trunk.generate(
                        prompts: [tokens, tokens],
                        options: SamplingOptions(
                            temperature: study.temperature, maxNewTokens: maxNew, eosTokenId: tokenizer.eosTokenId,
                            stopTokenIds: tokenizer.stopTokenIds,
                            seed: rng.next())
                    ).tokens
                    let a = tokenizer.decode(out[0], skipSpecialTokens: true),
                        b = tokenizer.decode(out[1], skipSpecialTokens: true)
                    let ga = gold(a, answer: answer), gb = gold(b, answer: answer)
                    if ga != gb {
                        pair = (a, b, ga, gb)
                        break
                    }
                }
                guard let (a, b, ga, gb) = pair else {
                    skipped += 1
                    continue
                }
                var (chosen, rejected) = ga > gb ? (a, b) : (b, a)
                if Double(rng.uniform()) < noise {
                    swap(&chosen, &rejected)
                    flipped += 1
                }
                lines.append(["prompt": prompt, "chosen": chosen, "rejected": rejected, "task": "arith"])
            }
            try JSONL.write(lines, to: file)
            say(
                "gold pairs for proxy \(k + 1): \(lines.count) pairs of SFT samples, \(flipped) labels flipped, "
                    + "\(skipped) prompts skipped (all samples tied) → \(file)"
            )
        }
    }
}
