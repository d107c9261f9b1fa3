import ArgumentParser
import Cluster
import Foundation
import Training

struct PipelineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "data → hydra-sft → ppo → eval in one run; prints held-out exact match after SFT and after PPO.",
        discussion: "Shared keys at the top level, Hydra-SFT keys under sft., PPO keys under rl. See `rlhf pipeline --print-config`.")
    @OptionGroup var experiment: ExperimentOptions

    func run() async throws {
        let resolved = try Pipeline.schema.resolve(file: experiment.config, overrides: experiment.overrides)
        if experiment.printConfig { print(resolved.yaml, terminator: ""); return }
        let world = await MPIRuntime.shared.world(timeout: resolved.double("cluster.timeout"))
        FailureReport.current = FailureContext(rank: world.rank, role: "pipeline", step: 0)
        let result = try await failingLoudly(world, context: { FailureReport.current }) {
            try await Pipeline.run(resolved, transport: world, onStage: { _, c in FailureReport.current = c })
        }
        guard world.rank == 0 else { return }
        func percent(_ x: Double?) -> String { x.map { String(format: "%.1f%%", 100 * $0) } ?? "n/a" }
        print("held-out exact match: after SFT \(percent(result.sftExactMatch)), after PPO \(percent(result.ppoExactMatch)); run \(result.runFolder)")
        printJSONLine(["sft_exact_match": result.sftExactMatch ?? NSNull(), "ppo_exact_match": result.ppoExactMatch ?? NSNull(),
                       "kl": result.kl, "seconds": result.seconds])
    }
}
