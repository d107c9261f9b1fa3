import ArgumentParser
import Cluster
import Config
import Datasets
import Foundation
import Runs
import Training

/// `rlhf <stage> --config FILE [key.sub=value …]`: the shape every stage's command shares.
struct ExperimentOptions: ParsableArguments {
    @Option(help: "Experiment YAML file; paths inside it resolve relative to it.")
    var config: String?

    @Argument(help: "Overrides after the file, e.g. train.lr=5e-4 eval.every=50.")
    var overrides: [String] = []

    @Flag(help: "Print every key with its resolved value and help, then exit.")
    var printConfig = false
}

struct SFT: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Supervised fine-tuning on demonstrations (completion tokens only).",
        discussion: "Keys and defaults: `rlhf sft --print-config`.")

    @OptionGroup var experiment: ExperimentOptions

    func run() async throws {
        try await runSFT(schema: sftSchema, experiment: experiment)
    }
}

/// Hydra-SFT: the SFT loop with a reward head trained on preference pairs on the same trunk.
struct HydraSFT: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hydra-sft",
        abstract:
            "One trunk, two heads: LM loss on demonstrations + w × Bradley–Terry loss on preference pairs (w = 0.1).",
        discussion: "Keys and defaults: `rlhf hydra-sft --print-config`.")
    @OptionGroup var experiment: ExperimentOptions
    func run() async throws { try await runSFT(schema: hydraSFTSchema, experiment: experiment) }
}

/// Reward model: the reward head on a trunk, pair loss only.
struct RM: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm",
        abstract:
            "Reward model: a reward head on a trunk trained on preference pairs (Bradley–Terry, margins, centering, "
            + "reward-collapse utilities).",
        discussion:
            "Keys and defaults: `rlhf rm --print-config`. Evaluation reports pairwise accuracy on held-out pairs.")
    @OptionGroup var experiment: ExperimentOptions
    func run() async throws { try await runSFT(schema: rmSchema, experiment: experiment) }
}

func runSFT(schema: ConfigSchema, experiment: ExperimentOptions) async throws {
    let resolved = try schema.resolve(file: experiment.config, overrides: experiment.overrides)
    if experiment.printConfig {
        print(resolved.yaml, terminator: "")
        return
    }
    let config = try SFTConfig(resolved)
    let world = await MPIRuntime.shared.world(timeout: config.run.timeout)
    let stage = SFTStage(config: config, transport: world)
    let result = try await failingLoudly(world, context: { stage.context }, stopsGracefully: true) {
        try await arrangeReductions(world, config.run.reduction)
        return try await stage.run()
    }
    guard world.rank == 0 else { return }
    var summary: [String: Any] = ["stage": config.stageName, "run": result.runFolder, "steps": result.steps]
    if let a = result.rewardAccuracy { summary["reward_accuracy"] = a }
    if let a = result.trainRewardAccuracy { summary["train_reward_accuracy"] = a }
    if let a = result.trainOrderKept { summary["train_order_kept"] = a }
    if let e = result.finalEval, e.examples > 0 {
        summary["eval_loss"] = e.loss
        if let em = e.exactMatch { summary["exact_match"] = em }
    }
    if let e = result.initialEval?.exactMatch { summary["initial_exact_match"] = e }
    if let c = result.lastCheckpoint { summary["checkpoint"] = c }
    if config.stageName == "rm" {
        summary["utility"] = config.hydra.utility.rawValue
        // The last evaluation's held-out rewards per prompt class (reward collapse shows here).
        if FileManager.default.fileExists(
            atPath: (result.runFolder as NSString).appendingPathComponent(RewardHistograms.fileName))
        {
            summary.merge(try RewardHistograms.read(run: result.runFolder).summary) { a, _ in a }
        }
    }
    printJSONLine(summary)
}

/// Sets up how gradient sums travel between the ranks (`cluster.reduction`, a collective) and
/// says so on rank 0.
func arrangeReductions(_ world: MPITransport, _ setting: ReductionSetting) async throws {
    if let line = try await world.arrangeReductions(setting), world.rank == 0 {
        print(line)
        fflush(nil)
    }
}

/// Runs `body`; on an error prints `rank r (role, step s): reason` and, when other ranks exist,
/// aborts the whole MPI job so that none of them waits forever. `stopsGracefully` (single-stage
/// training commands): SIGINT/SIGTERM/SIGUSR1 end the run after a step with a checkpoint, the
/// way to continue printed, and exit status 128 + the signal.
func failingLoudly<T>(
    _ world: MPITransport, context: () -> FailureContext, stopsGracefully: Bool = false,
    _ body: () async throws -> T
) async throws -> T {
    if stopsGracefully { try StopRequest.installHandlers() }
    do {
        return try await body()
    } catch let stopped as RunStopped {
        if world.rank == 0 {
            log(stopped.description)
            if let command = stopped.resumeCommand(arguments: CommandLine.arguments) {
                log("to continue from it: \(command)" + (world.size > 1 ? "   (under the same mpirun command)" : ""))
            }
        }
        await MPIRuntime.shared.finalize()
        throw ExitCode(stopped.signal.exitStatus)
    } catch {
        log(context().describe("\(error)"))
        if world.size > 1 { await MPIRuntime.shared.abort(code: 1) }
        throw ExitCode(1)
    }
}

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Write built-in task data as JSONL.", subcommands: [Arith.self, IFEval.self])

    struct IFEval: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ifeval",
            abstract:
                "Instruction following: \"Write a short note about {topic}.\" + one or two verifiable instructions, "
                + "as conversational prompts.",
            discussion:
                "prompts.jsonl (training topics and constraint pairs) and eval.jsonl (held-out topics and pairs); "
                + "each row's answer holds the constraints, which the instructions verifier checks."
        )
        @Option(help: "Folder to write prompts.jsonl and eval.jsonl into.")
        var out: String
        @Option(help: "Seed of the prompts and of the held-out split.")
        var seed: UInt64 = 1
        @Option(help: "Training prompts.")
        var trainSize: Int = 2000
        @Option(help: "Held-out prompts.")
        var evalSize: Int = 200

        func run() throws {
            guard trainSize > 0, evalSize > 0 else { throw CLIError("--train-size and --eval-size must be positive") }
            for f in try IFEvalTask(seed: seed, trainSize: trainSize, evalSize: evalSize).write(to: out) {
                log("wrote \(f)")
            }
        }
    }

    struct Arith: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "a + b with a, b in 0…99: flawed SFT demos, preference pairs, RL prompts, held-out eval.")
        @Option(
            help:
                ArgumentHelp(
                    "Folder to write sft.jsonl, prefs.jsonl, prompts.jsonl, eval.jsonl, eval_prefs.jsonl, judge.jsonl, "
                        + "eval_judge.jsonl into.")
        )
        var out: String
        @Option(help: "Seed of the split and the flaws.")
        var seed: UInt64 = 1
        @Option(help: "The demonstrator's habit: drop_carry, off_by_one or random.")
        var flaw: String = "drop_carry"
        @Option(help: "Share of carrying sums the demonstrator gets wrong.")
        var flawShare: Double = 0.6
        @Option(help: "Held-out (a, b) pairs, disjoint from training.")
        var evalSize: Int = 500

        func run() throws {
            guard let kind = ArithFlaw(rawValue: flaw) else {
                throw CLIError(
                    "--flaw '\(flaw)' is not one of \(ArithFlaw.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard (0...1).contains(flawShare) else { throw CLIError("--flaw-share must be in [0, 1]") }
            let files = try ArithTask(seed: seed, flaw: kind, flawShare: flawShare, evalSize: evalSize).write(to: out)
            for f in files { log("wrote \(f)") }
        }
    }
}
