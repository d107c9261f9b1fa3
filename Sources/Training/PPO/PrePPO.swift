import Alignment
import Cluster
import Datasets
import Foundation
import Kernels
import Models
import Rewards
import Roles
import Runs
import Tokenizers

extension PPOSession {
    /// Pre-PPO prompt selection (Shen et al. 2025, docs/algorithms.md §8.3): sample `prepo.samples`
    /// responses per candidate prompt from the SFT policy, score them with the run's reward, and
    /// keep the `prepo.keep` share with the lowest per-task z-score of the mean (the hard prompts).
    /// Candidates are shared round-robin over the ranks rolling out; prepo.jsonl in the run folder
    /// lists every candidate with its score, z and whether it was kept. The reward is the run's
    /// whole reward: `sources` must already hold the sources built over the candidates (the
    /// hybrid reward's best-of-N references included).
    func prePPOSelection(candidates: [Int], folder: RunFolder?) async throws -> [Int] {
        let prompts = data.prompts
        let samples = cfg.promptSelection.samples  // ≥ 1, checked at load
        let rank = replicas?.rank ?? 0, ranks = replicas?.size ?? 1
        var means = [Double](repeating: 0, count: candidates.count)
        let chunk = 64
        for start in stride(from: rank * chunk, to: candidates.count, by: chunk * ranks) {
            let part = Array(candidates[start..<min(start + chunk, candidates.count)])
            let repeated = part.flatMap { Array(repeating: prompts[$0], count: samples) }
            var out = try await policy.generate(
                prompts: repeated.map(\.tokens),
                options: SamplingOptions(
                    temperature: cfg.ppo.temperature, topK: cfg.ppo.topK, topP: cfg.ppo.topP,
                    maxNewTokens: cfg.ppo.maxNewTokens,
                    eosTokenId: tokenizer.eosTokenId, stopTokenIds: tokenizer.stopTokenIds,
                    seed: cfg.run.seed &+ 0x9EA &+ UInt64(start)))
            let texts = stopped(&out)
            let scores = try await prePPOScores(
                prompts: repeated, indices: part.flatMap { Array(repeating: $0, count: samples) }, tokens: out.tokens,
                texts: texts, endedWithEOS: out.endedWithEOS)
            for (k, _) in part.enumerated() {
                means[start + k] = scores[(k * samples)..<((k + 1) * samples)].reduce(0, +) / Double(samples)
            }
        }
        if let replicas, replicas.size > 1 { means = try await replicas.allReduce(means, op: .sum) }
        let tasks = candidates.map { prompts[$0].task }
        let keptPositions = Set(PrePPOSelection.hardest(scores: means, tasks: tasks, share: cfg.promptSelection.keep))
        let z = PrePPOSelection.zScores(scores: means, tasks: tasks)
        if let folder, (replicas?.rank ?? 0) == 0 {
            try JSONL.write(
                candidates.indices.map { k in
                    [
                        "prompt": tokenizer.decode(prompts[candidates[k]].tokens, skipSpecialTokens: true),
                        "task": tasks[k], "mean_reward": means[k], "z": z[k], "kept": keptPositions.contains(k),
                    ]
                }, to: (folder.path as NSString).appendingPathComponent("prepo.jsonl"))
        }
        say(
            String(
                format:
                    "Pre-PPO: kept %d of %d candidate prompts (the hardest %.0f%% by per-task z-score of the SFT "
                    + "policy's mean reward over %d samples); mean reward of kept %.3f vs all %.3f",
                keptPositions.count, candidates.count, 100 * cfg.promptSelection.keep, samples,
                keptPositions.reduce(0) { $0 + means[$1] } / Double(max(keptPositions.count, 1)),
                means.reduce(0, +) / Double(max(means.count, 1))))
        return keptPositions.sorted().map { candidates[$0] }
    }

    /// prepo.rule random: as many candidates as the hardest rule keeps, drawn by a seeded shuffle
    /// (no scoring): the control with Pre-PPO's pool size and none of its choice.
    func randomPromptSubset(_ candidates: [Int]) -> [Int] {
        let keep = PrePPOSelection.keptCount(candidates.count, share: cfg.promptSelection.keep)
        var order = candidates
        var rng = RNG(seed: cfg.run.seed &+ 0x9EB)
        shuffle(&order, &rng)
        say("Pre-PPO control: kept \(keep) of \(candidates.count) candidate prompts at random (prepo.rule random)")
        return order.prefix(keep).sorted()
    }

    /// Pre-PPO's candidate prompts: prepo.candidates of them in a seeded order (0: all).
    func prePPOCandidates() -> [Int] {
        var order = Array(data.prompts.indices)
        var rng = RNG(seed: cfg.run.seed &+ 0x9E9)
        shuffle(&order, &rng)
        return cfg.promptSelection.candidates > 0 ? Array(order.prefix(cfg.promptSelection.candidates)) : order
    }

    /// The run's reward of the SFT policy's samples: every source (learned proxies as their
    /// ensemble: no bandit step, no R2M fusion).
    func prePPOScores(
        prompts: [PPOPrompt], indices: [Int], tokens: [[Int32]], texts: [String], endedWithEOS: [Bool]
    ) async throws -> [Double] {
        let sequences = zip(prompts, tokens).map { $0.tokens + $1 }
        let passes = try await scoringPasses(sequences, needs: .lastHidden, policyPass: false)
        let batch = rewardBatch(
            prompts: prompts, indices: indices, texts: texts,
            sequences: sequences, passes: passes, iteration: 0, purpose: .selection)
        return finalScores(
            // No collective here: ranks score different numbers of candidate chunks.
            try await RewardSources.compose(sources, batch: batch, replicas: nil).total, endedWithEOS: endedWithEOS,
            lengths: tokens.map(\.count))
    }
}
