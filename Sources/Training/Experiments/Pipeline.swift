import Cluster
import Config
import Foundation
import Runs

/// `rlhf pipeline`: data → Hydra-SFT → PPO → evaluation in one run folder. One YAML file: the
/// shared keys (name, seed, tokenizer, model, data, placement, cluster) at the top level, the
/// Hydra-SFT stage's other keys under `sft.`, PPO's under `rl.`.
public enum Pipeline {
    static let sharedKeys = CommonKeys.run + CommonKeys.data
    static let shared = Set(sharedKeys.map(\.path))

    public static let schema = ConfigSchema(
        sharedKeys + nested(hydraSFTSchema, under: "sft.", shared: shared)
            + nested(ppoSchema, under: "rl.", shared: shared))

    /// A stage's keys under `prefix`, less the experiment's shared ones.
    static func nested(_ stage: ConfigSchema, under prefix: String, shared: Set<String>) -> [ConfigKey] {
        stage.keys.filter { !shared.contains($0.path) }.map { $0.prefixed(prefix) }
    }

    public struct Result: Sendable {
        public var sftExactMatch: Double?
        public var ppoExactMatch: Double?
        public var kl: Double
        public var seconds: Double
        public var runFolder: String
    }

    public static func run(
        _ config: ResolvedConfig, transport: any Transport,
        workingDirectory: String = FileManager.default.currentDirectoryPath,
        say: @escaping (String) -> Void = { Console.note($0) }, onStage: (String, FailureContext) -> Void = { _, _ in }
    ) async throws -> Result {
        let started = Date()
        // One folder for the whole pipeline (rank 0 decides), stages in sft/ and ppo/.
        let folder = try await RunFolder.chooseCollectively(
            name: config[RunSettings.name], out: config[RunSettings.out].path, resume: .never,
            workingDirectory: workingDirectory, transport: transport
        ).folder.path
        if transport.rank == 0 {
            try RunFolder(path: folder).writeConfig(config.yaml)
            try Console.openLog(RunFolder(path: folder).log, slot: .experiment)
        }
        let sayRankZero: (String) -> Void = { if transport.rank == 0 { say($0) } }
        sayRankZero("pipeline: run folder \(folder)\n== stage 1/2: hydra-sft")
        let sftConfig = try SFTConfig(
            config.scoped(to: hydraSFTSchema, prefix: "sft.", shared: shared)
                .with(RunSettings.out, ConfigPath(folder + "/sft")).with(RunSettings.resume, "never"))
        let sft = SFTStage(config: sftConfig, transport: transport, workingDirectory: workingDirectory, say: say)
        let sftResult = try await runStage(sft, as: "hydra-sft", onStage: onStage)
        guard let checkpoint = sftResult.lastCheckpoint ?? Checkpoints.newest(in: "\(folder)/sft/checkpoints") else {
            throw TrainingError("hydra-sft left no checkpoint in \(folder)/sft")
        }
        sayRankZero("== stage 2/2: ppo from \(checkpoint)")
        let ppoConfig = try PPOConfig(
            config.scoped(to: ppoSchema, prefix: "rl.", shared: shared)
                .with(RunSettings.out, ConfigPath(folder + "/ppo")).with(RunSettings.initFrom, ConfigPath(checkpoint)))
        let ppo = PPOStage(config: ppoConfig, transport: transport, workingDirectory: workingDirectory, say: say)
        let ppoResult = try await runStage(ppo, as: "ppo", onStage: onStage)
        return Result(
            sftExactMatch: ppoResult.initialExactMatch ?? sftResult.finalEval?.exactMatch,
            ppoExactMatch: ppoResult.finalExactMatch,
            kl: ppoResult.kl, seconds: Date().timeIntervalSince(started), runFolder: folder)
    }
}
