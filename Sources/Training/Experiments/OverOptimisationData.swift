import Alignment
import Config
import Datasets
import Foundation
import Kernels
import Models
import Runs
import Tokenizers

/// What each proxy of the study knows (study.proxy_slices): the prompts its pairs are drawn from.
public enum ProxySlices: String, ConfigChoice {
    case none, size, carry

    /// The training problems proxy `k` (0-based) of `count` draws from: all; the k-th of `count`
    /// bands of the problems ordered by a + b (then a); odd proxies (k even) the sums whose units
    /// carry, even ones the rest.
    func problems(_ all: [ArithTask.Problem], proxy k: Int, of count: Int) -> [ArithTask.Problem] {
        switch self {
        case .none: return all
        case .size:
            let sorted = all.sorted { ($0.a + $0.b, $0.a) < ($1.a + $1.b, $1.a) }
            return Array(sorted[(k * sorted.count / count)..<((k + 1) * sorted.count / count)])
        case .carry: return all.filter { ($0.a % 10 + $0.b % 10 >= 10) == (k % 2 == 0) }
        }
    }
}

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
    /// judge.jsonl holds a judgement of every training problem (hybrid_gold's GenRM);
    /// judge_budget.jsonl study.genrm_judgements of them with study.noise of the verdicts flipped
    /// (the fair GenRM: the proxies' label budget and noise).
    static func writeHybridData(_ task: ArithTask, study: Settings, seed: UInt64, folder: String) throws {
        let all = task.judgements(task.train, salt: 4)
        guard study.genrmJudgements <= all.count else {
            throw ConfigError(
                "'study.genrm_judgements' (\(study.genrmJudgements)) is more than the \(all.count) training problems "
                    + "have judgements")
        }
        try JSONL.write(all, to: "\(folder)/judge.jsonl")
        try JSONL.write(
            budgetJudgements(all, count: study.genrmJudgements, noise: study.noise, seed: seed),
            to: "\(folder)/judge_budget.jsonl")
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

    /// `count` judgements drawn without replacement (seeded), each verdict (Y/N) flipped with
    /// probability `noise`.
    static func budgetJudgements(_ all: [[String: Any]], count: Int, noise: Double, seed: UInt64) -> [[String: Any]] {
        var rng = RNG(seed: seed &+ 0x6E4B)
        var order = Array(all.indices)
        shuffle(&order, &rng)
        return order.prefix(count).map { i in
            var j = all[i]
            if Double(rng.uniform()) < noise {
                let flipped = (j["completion"] as? String) == JudgePrompt.yes ? JudgePrompt.no : JudgePrompt.yes
                j["completion"] = flipped
                j["answer"] = flipped
            }
            return j
        }
    }

    /// For each proxy: `study.pairs` prompts (its own seeded draw from its slice of the training
    /// problems, study.proxy_slices), two sampled SFT responses each, the pair ordered by the gold
    /// reward (ties redrawn up to 8 times, then skipped) and flipped with probability `study.noise`;
    /// `heldout`: study.heldout_pairs noise-free pairs on the held-out problems.
    static func writeGoldPairs(
        _ study: Settings, task: ArithTask, seed: UInt64, maxNewTokens maxNew: Int, sftModel: String, files: [String],
        heldout: String?, say: (String) -> Void
    ) throws {
        guard !task.train.isEmpty else {
            throw ConfigError(
                "'data.eval_size' (\(task.eval.count)) holds out every arith problem: no training prompts are left "
                    + "for the gold pairs"
            )
        }
        let sampler = PairSampler(
            trunk: try HFCheckpoint.load(directory: sftModel), tokenizer: try Tokenizers.load(sftModel),
            temperature: study.temperature, maxNewTokens: maxNew)
        var jobs = files.enumerated().map { k, file in
            PairJob(
                file: file, problems: study.proxySlices.problems(task.train, proxy: k, of: study.proxies),
                count: study.pairs, noise: study.noise, salt: UInt64(k))
        }
        if let heldout {
            jobs.append(PairJob(file: heldout, problems: task.eval, count: study.heldoutPairs, noise: 0, salt: 0x4E1D))
        }
        for (k, job) in jobs.enumerated() {
            guard !job.problems.isEmpty else {
                throw ConfigError("'study.proxy_slices' \(study.proxySlices): proxy \(k + 1)'s slice has no problem")
            }
            let (lines, flipped, skipped) = try sampler.pairs(job, seed: seed)
            try JSONL.write(lines, to: job.file)
            say(
                "gold pairs \(k < files.count ? "for proxy \(k + 1)" : "held out"): \(lines.count) pairs of SFT "
                    + "samples (\(job.problems.count) problems to draw from), \(flipped) labels flipped, "
                    + "\(skipped) prompts skipped (all samples tied) → \(job.file)"
            )
        }
    }

    /// One file of gold-labelled pairs: `count` pairs on `problems`, `noise` of the labels flipped.
    struct PairJob { var file: String, problems: [ArithTask.Problem], count: Int, noise: Double, salt: UInt64 }

    /// Samples pairs of the SFT model's responses and orders them by the gold reward.
    struct PairSampler {
        let trunk: any CausalLM, tokenizer: any Tokenizer, temperature: Float, maxNewTokens: Int

        /// The job's pairs (prompt, chosen, rejected, task), the labels flipped and the prompts skipped.
        func pairs(_ job: PairJob, seed: UInt64) throws -> (lines: [[String: Any]], flipped: Int, skipped: Int) {
            var rng = RNG(seed: seed &+ 0x601D &+ job.salt &* 7919)
            var lines: [[String: Any]] = [], flipped = 0, skipped = 0
            var attempt = 0
            while lines.count < job.count && attempt < 20 * job.count {
                attempt += 1
                let problem = job.problems[Int(rng.next() % UInt64(job.problems.count))]
                let prompt = ArithTask.prompt(problem)
                guard let (a, b) = try differing(prompt, answer: ArithTask.answer(problem), rng: &rng) else {
                    skipped += 1
                    continue
                }
                var (chosen, rejected) = (a, b)
                if Double(rng.uniform()) < job.noise {
                    swap(&chosen, &rejected)
                    flipped += 1
                }
                lines.append(["prompt": prompt, "chosen": chosen, "rejected": rejected, "task": "arith"])
            }
            return (lines, flipped, skipped)
        }

        /// Two samples whose gold rewards differ, better first (up to 8 draws of two), or nil.
        func differing(_ prompt: String, answer: String, rng: inout RNG) throws -> (String, String)? {
            let tokens = tokenizer.encodeWithPrefix(prompt)
            for _ in 0..<8 {
                let out = try trunk.generate(
                    prompts: [tokens, tokens],
                    options: SamplingOptions(
                        temperature: temperature, maxNewTokens: maxNewTokens, eosTokenId: tokenizer.eosTokenId,
                        stopTokenIds: tokenizer.stopTokenIds, seed: rng.next())
                ).tokens
                let a = tokenizer.decode(out[0], skipSpecialTokens: true),
                    b = tokenizer.decode(out[1], skipSpecialTokens: true)
                let ga = gold(a, answer: answer), gb = gold(b, answer: answer)
                if ga != gb { return ga > gb ? (a, b) : (b, a) }
            }
            return nil
        }
    }
}
