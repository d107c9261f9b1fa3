import Datasets
import Foundation
import Runs

/// samples.jsonl (issue 29, point 4): what each iteration sampled and how it was rewarded, one
/// line per response of rank 0's share (the first `log.samples`): iteration, the prompt's index
/// and text, the completion as the rewards read it, each source's unweighted value, the reward
/// PPO used (after the overlong, missing-EOS and clip rules), the advantage (the mean over the
/// response's tokens: a group estimator's one value), whether it finished (EOS or a stop string)
/// or was cut at the length limit, and its length in tokens.
extension PPOSession {
    func writeSamples(_ r: Rollout, _ s: ScoredRollout, _ a: Advantages) throws {
        guard let path = samplesFile, cfg.samplesPerIteration > 0 else { return }
        let records = (0..<min(cfg.samplesPerIteration, r.texts.count)).map { i -> [String: Any] in
            let advantages = a.advantages[i]
            return [
                "iteration": r.iteration, "prompt_index": r.promptIndices[i], "prompt": r.prompts[i].text,
                "completion": r.texts[i], "reward": s.scores[i],
                "rewards": s.rewards.bySource.mapValues { $0[i] },
                "advantage": advantages.reduce(0, +) / Double(max(advantages.count, 1)),
                "finished": r.endedWithEOS[i], "tokens": r.tokens[i].count,
            ]
        }
        try JSONL.append(records.map(RunFolder.jsonSafe), to: path)  // a NaN reward is written as null
    }
}
