import ArgumentParser
import Foundation
import Training

/// `rlhf overopt`: the reward over-optimisation study, one method per run.
struct OverOpt: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "overopt",
        abstract: "SFT → gold-labelled pairs → proxy reward heads → PPO on the proxy (proxy, r2m or laser); gold and proxy reward against KL.",
        discussion: """
            The gold reward (exact answer + bare-integer format) is hidden from PPO and logged as gold_mean. Ends with one JSON \
            line: method, gold_peak, gold_final, proxy_final, kl_final, seconds. Compare runs with \
            `rlhf plot RUN… --metric gold_mean --x kl`. Keys: `rlhf overopt --print-config`.
            """)
    @OptionGroup var experiment: ExperimentOptions

    func run() async throws {
        guard let (result, rank) = try await runStages(OverOptimisation.schema, experiment, role: "overopt", OverOptimisation.run), rank == 0 else { return }
        print("gold reward: peak \(String(format: "%.3f", result.goldPeak)), final \(String(format: "%.3f", result.goldFinal)); run \(result.runFolder)")
        printJSONLine(result.json)
    }
}
