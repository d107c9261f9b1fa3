import Alignment
import Cluster
import Foundation
import Kernels
import Models
import Roles
import Tokenizers

extension PPOStage {
    /// Pre-PPO prompt selection (Shen et al. 2025, algorithms.md §8.3): sample `prepo.samples`
    /// responses per candidate prompt from the SFT policy, score them with the run's reward, and
    /// keep the `prepo.keep` share with the lowest per-task z-score of the mean (the hard prompts).
    /// Candidates are shared round-robin over the ranks rolling out; prepo.jsonl in the run folder
    /// lists every candidate with its score, z and whether it was kept.
    func prePPOSelection(prompts: [Prompt], policy: LocalPolicy, folder: RunFolder, replicas: (any Transport)?,
                         score: ([[Int32]], [Int], [String], [String?], [Bool]) async throws -> [Double]) async throws -> [Int] {
        let c = config.c, tokenizer = try Tokenizers.load(config.initFrom)
        let samples = max(c.int("prepo.samples"), 1)
        var order = Array(prompts.indices)
        var rng = RNG(seed: config.seed &+ 0x9E9)
        shuffle(&order, &rng)
        let candidates = c.int("prepo.candidates") > 0 ? Array(order.prefix(c.int("prepo.candidates"))) : order
        let rank = replicas?.rank ?? 0, ranks = replicas?.size ?? 1
        var means = [Double](repeating: 0, count: candidates.count)
        let chunk = 64
        for start in stride(from: rank * chunk, to: candidates.count, by: chunk * ranks) {
            let part = Array(candidates[start..<min(start + chunk, candidates.count)])
            let repeated = part.flatMap { Array(repeating: prompts[$0], count: samples) }
            let out = try await policy.generate(prompts: repeated.map(\.tokens), options: SamplingOptions(
                temperature: c.float("ppo.temperature"), topK: c.int("ppo.top_k"), topP: c.float("ppo.top_p"), maxNewTokens: config.maxNewTokens,
                eosTokenId: tokenizer.eosTokenId, seed: config.seed &+ 0x9EA &+ UInt64(start)))
            let scores = try await score(zip(repeated, out.tokens).map { $0.tokens + $1 }, repeated.map(\.tokens.count),
                                         out.tokens.map { tokenizer.decode($0, skipSpecialTokens: true) }, repeated.map(\.answer), out.endedWithEOS)
            for (k, _) in part.enumerated() { means[start + k] = scores[(k * samples)..<((k + 1) * samples)].reduce(0, +) / Double(samples) }
        }
        if let replicas, replicas.size > 1 { means = try await replicas.allReduce(means, op: .sum) }
        let tasks = candidates.map { prompts[$0].task }
        let keptPositions = Set(PrePPOSelection.hardest(scores: means, tasks: tasks, share: c.double("prepo.keep")))
        let z = PrePPOSelection.zScores(scores: means, tasks: tasks)
        if (replicas?.rank ?? 0) == 0 {
            try JSONL.write(candidates.indices.map { k in
                ["prompt": tokenizer.decode(prompts[candidates[k]].tokens, skipSpecialTokens: true), "task": tasks[k], "mean_reward": means[k], "z": z[k], "kept": keptPositions.contains(k)]
            }, to: (folder.path as NSString).appendingPathComponent("prepo.jsonl"))
        }
        say(String(format: "Pre-PPO: kept %d of %d candidate prompts (the hardest %.0f%% by per-task z-score of the SFT policy's mean reward over %d samples); mean reward of kept %.3f vs all %.3f",
                   keptPositions.count, candidates.count, 100 * c.double("prepo.keep"), samples,
                   keptPositions.reduce(0) { $0 + means[$1] } / Double(max(keptPositions.count, 1)), means.reduce(0, +) / Double(max(means.count, 1))))
        return keptPositions.sorted().map { candidates[$0] }
    }
}
