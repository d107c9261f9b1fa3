import ArgumentParser
import Cluster
import Config
import Foundation
import Training

struct PPO: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Online RL from a (Hydra-)SFT checkpoint: PPO with GAE, or GRPO / RLOO / REINFORCE++ estimators.",
        discussion: "Keys and defaults: `rlhf ppo --print-config`.")
    @OptionGroup var experiment: ExperimentOptions

    func run() async throws {
        let resolved = try ppoSchema.resolve(file: experiment.config, overrides: experiment.overrides)
        if experiment.printConfig {
            print(resolved.yaml, terminator: "")
            return
        }
        let config = try PPOConfig(resolved)
        let world = await MPIRuntime.shared.world(timeout: config.run.timeout)
        let stage = PPOStage(config: config, transport: world)
        let result = try await failingLoudly(world, context: { stage.context }, stopsGracefully: true) {
            try await arrangeReductions(world, config.run.reduction)
            return try await stage.run()
        }
        guard world.rank == 0 else { return }
        var summary: [String: Any] = [
            "stage": "ppo", "run": result.runFolder, "kl": result.kl, "seconds": result.seconds,
        ]
        if let e = result.initialExactMatch { summary["initial_exact_match"] = e }
        if let e = result.finalExactMatch { summary["exact_match"] = e }
        // ifeval: the experiment's line, {"model", "before", "after", "kl", "seconds"}.
        if config.data.task == .ifeval { summary["model"] = config.run.initFrom }
        if let before = result.initialInstructions { summary["before"] = before }
        if let after = result.finalInstructions { summary["after"] = after }
        printJSONLine(summary)
    }
}
