import ArgumentParser
import Cluster
import Config
import Foundation
import Training

/// `rlhf dpo`: offline preference optimisation (DPO family, CPL, InSPO) from an SFT model.
struct DPO: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dpo",
        abstract:
            "Offline preference optimisation on pairs: dpo, ipo, cdpo, robust, hinge, cpl, cpl_bc or inspo (dpo.loss).",
        discussion: """
            The reference is the SFT model (adapters off under LoRA, else a frozen copy); its log-probs are computed \
            once \
            and cached in the run folder. Keys and defaults: `rlhf dpo --print-config`.
            """)
    @OptionGroup var experiment: ExperimentOptions

    func run() async throws {
        let resolved = try dpoSchema.resolve(file: experiment.config, overrides: experiment.overrides)
        if experiment.printConfig {
            print(resolved.yaml, terminator: "")
            return
        }
        let config = try DPOConfig(resolved)
        let world = await MPIRuntime.shared.world(timeout: resolved[RunSettings.timeout])
        let stage = DPOStage(config: config, transport: world)
        let result = try await failingLoudly(world, context: { stage.context }, stopsGracefully: true) {
            try await arrangeReductions(world, RunSettings.reduction(resolved))
            return try await stage.run()
        }
        guard world.rank == 0 else { return }
        var summary: [String: Any] = [
            "stage": "dpo", "loss": result.loss, "run": result.runFolder, "train_seconds": result.trainSeconds,
            "reference_seconds": result.referenceSeconds,
        ]
        if let e = result.initialEval?.exactMatch { summary["initial_exact_match"] = e }
        if let e = result.finalEval {
            if let v = e.exactMatch { summary["exact_match"] = v }
            if let v = e.conditionedExactMatch { summary["conditioned_exact_match"] = v }
            if let v = e.rewardAccuracy { summary["reward_accuracy"] = v }
            if let v = e.kl { summary["kl"] = v }
        }
        if let c = result.lastCheckpoint { summary["checkpoint"] = c }
        printJSONLine(summary)
    }
}

/// `rlhf prefs`: SFT once, then one preference run per loss, and the comparison table.
struct Prefs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prefs",
        abstract: "SFT → one dpo run per loss in compare.losses → table.md/table.json; one JSON line per loss.",
        discussion:
            "Shared keys at the top level, SFT keys under sft., preference-run keys under prefs., per-loss overrides "
            + "in compare.overrides.<loss>. See `rlhf prefs --print-config`."
    )
    @OptionGroup var experiment: ExperimentOptions

    func run() async throws {
        guard
            let (result, rank) = try await runStages(
                PreferenceComparison.schema, experiment, role: "prefs", PreferenceComparison.run), rank == 0
        else { return }
        print("table: \(result.runFolder)/table.md")
        if let table = try? String(contentsOfFile: result.runFolder + "/table.md", encoding: .utf8) { print(table) }
        for row in result.rows { printJSONLine(row.json) }
    }
}
