import ArgumentParser
import Cluster
import Config
import Foundation
import Training

struct PipelineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "data → hydra-sft → ppo → eval in one run; prints held-out exact match after SFT and after PPO.",
        discussion:
            "Shared keys at the top level, Hydra-SFT keys under sft., PPO keys under rl. See `rlhf pipeline "
            + "--print-config`."
    )
    @OptionGroup var experiment: ExperimentOptions

    func run() async throws {
        guard let (result, rank) = try await runStages(Pipeline.schema, experiment, role: "pipeline", Pipeline.run),
            rank == 0
        else { return }
        func percent(_ x: Double?) -> String { x.map { String(format: "%.1f%%", 100 * $0) } ?? "n/a" }
        print(
            "held-out exact match: after SFT \(percent(result.sftExactMatch)), after PPO "
                + "\(percent(result.ppoExactMatch)); run \(result.runFolder)"
        )
        printJSONLine([
            "sft_exact_match": result.sftExactMatch ?? NSNull(), "ppo_exact_match": result.ppoExactMatch ?? NSNull(),
            "kl": result.kl, "seconds": result.seconds,
        ])
    }
}

/// A command that runs several stages in one world: resolve (or print) the config, start the
/// world, and run `body` with failures reported as `rank r (stage, step s): reason`. Returns the
/// result and this process's rank, or nil after --print-config.
func runStages<R>(
    _ schema: ConfigSchema, _ experiment: ExperimentOptions, role: String,
    _ body: (ResolvedConfig, any Transport, String, @escaping (String) -> Void, (String, FailureContext) -> Void)
        async throws -> R
) async throws -> (R, Int)? {
    let resolved = try schema.resolve(file: experiment.config, overrides: experiment.overrides)
    if experiment.printConfig {
        print(resolved.yaml, terminator: "")
        return nil
    }
    let world = await MPIRuntime.shared.world(timeout: resolved[RunSettings.timeout])
    FailureReport.current = FailureContext(rank: world.rank, role: role, step: 0)
    let result = try await failingLoudly(world, context: { FailureReport.current }) {
        try await arrangeReductions(world, RunSettings.reduction(resolved))
        return try await body(
            resolved, world, FileManager.default.currentDirectoryPath,
            {
                print($0)
                fflush(nil)
            }, { _, c in FailureReport.current = c })
    }
    return (result, world.rank)
}
