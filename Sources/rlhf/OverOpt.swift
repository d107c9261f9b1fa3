import ArgumentParser
import Foundation
import Training

/// `rlhf overopt`: the reward over-optimisation study, every method of study.methods on every seed of study.seeds.
struct OverOpt: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "overopt",
        abstract:
            "SFT → gold-labelled pairs → proxy reward heads → PPO on each method's reward, per seed; gold and proxy "
            + "reward against KL.",
        discussion: """
            The gold reward (exact answer + bare-integer format) is hidden from PPO and logged as gold_mean. Prints \
            one JSON \
            line per method and seed (method, seed, gold_start, gold_peak, gold_final, gold_drop, proxy_final, \
            kl_final, seconds; \
            exact_match_final with evaluations) \
            as each run ends, then the summary table (mean ± sd over the seeds per method; summary.md and summary.json \
            in the \
            run folder, gold-vs-kl.svg with seed bands). Redraw with `rlhf plot RUN --bands --metric gold_mean --x kl \
            --smooth 10`. \
            Keys: `rlhf overopt --print-config`.
            """)
    @OptionGroup var experiment: ExperimentOptions

    @Option(
        help: ArgumentHelp(
            "Make the summary of a finished study FOLDER again from its runs (no training); --config and the "
                + "overrides must be the study's.", valueName: "FOLDER"))
    var summarise: String?

    func run() async throws {
        if let folder = summarise {
            let config = try OverOptimisation.schema.resolve(file: experiment.config, overrides: experiment.overrides)
            let study = try OverOptimisation.summariseAgain(folder: folder, config: config)
            print("over-optimisation study (mean ± sd over seeds); \(study.folder)\n" + study.markdown, terminator: "")
            printJSONLine(["summary": study.summary])
            return
        }
        guard
            let (study, rank) = try await runStages(
                OverOptimisation.schema, experiment, role: "overopt",
                { config, transport, directory, say, onStage in
                    try await OverOptimisation.run(
                        config, transport: transport, workingDirectory: directory, say: say, onStage: onStage,
                        report: { printJSONLine($0.json) })
                }), rank == 0
        else { return }
        print("\nover-optimisation study (mean ± sd over seeds); \(study.folder)\n" + study.markdown, terminator: "")
        printJSONLine(["summary": study.summary])
    }
}
