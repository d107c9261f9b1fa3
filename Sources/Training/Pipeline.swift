import Cluster
import Foundation

/// `rlhf pipeline`: data → Hydra-SFT → PPO → evaluation in one run folder. One YAML file: the
/// shared keys (name, seed, tokenizer, model, data, placement, cluster) at the top level, the
/// Hydra-SFT stage's other keys under `sft.`, PPO's under `rl.`.
public enum Pipeline {
    static let sharedKeys = CommonKeys.run + CommonKeys.data
    static let shared = Set(sharedKeys.map(\.path))

    public static let schema = ConfigSchema(sharedKeys
        + hydraSFTSchema.keys.filter { !shared.contains($0.path) }.map { ConfigKey("sft." + $0.path, $0.type, $0.defaultValue, $0.help) }
        + ppoSchema.keys.filter { !shared.contains($0.path) }.map { ConfigKey("rl." + $0.path, $0.type, $0.defaultValue, $0.help) })

    /// A stage's resolved config from the pipeline's: shared keys as they are, `prefix.key` as `key`.
    static func stage(_ pipeline: ResolvedConfig, schema: ConfigSchema, prefix: String, overrides extra: [String],
                      shared: Set<String> = Pipeline.shared) throws -> ResolvedConfig {
        var overrides: [String] = []
        for key in schema.keys {
            let value = shared.contains(key.path) ? pipeline.values[key.path] : pipeline.values[prefix + key.path]
            guard let value else { continue }
            let text: String
            switch value { case .string(let s): text = s; case .float(let d): text = "\(d)"; default: text = value.description }
            overrides.append("\(key.path)=\(text)")
        }
        return try schema.resolve(file: nil, overrides: overrides + extra)
    }

    public struct Result: Sendable {
        public var sftExactMatch: Double?
        public var ppoExactMatch: Double?
        public var kl: Double
        public var seconds: Double
        public var runFolder: String
    }

    public static func run(_ config: ResolvedConfig, transport: any Transport, workingDirectory: String = FileManager.default.currentDirectoryPath,
                           say: @escaping (String) -> Void = { print($0); fflush(nil) }, onStage: (String, FailureContext) -> Void = { _, _ in }) async throws -> Result {
        let started = Date()
        // One folder for the whole pipeline (rank 0 decides), stages in sft/ and ppo/.
        let folder = try await RunFolder.chooseCollectively(name: config.string("name"), out: config.string("out"), resume: "never",
                                                            workingDirectory: workingDirectory, transport: transport).folder.path
        if transport.rank == 0 { try RunFolder(path: folder).writeConfig(config.yaml) }
        let sayRankZero: (String) -> Void = { if transport.rank == 0 { say($0) } }
        sayRankZero("pipeline: run folder \(folder)\n== stage 1/2: hydra-sft")
        let sftConfig = try SFTConfig(try stage(config, schema: hydraSFTSchema, prefix: "sft.", overrides: ["out=\(folder)/sft", "resume=never"]))
        let sft = SFTStage(config: sftConfig, transport: transport, workingDirectory: workingDirectory, say: say)
        onStage("hydra-sft", sft.context)
        let sftResult = try await sft.run()
        guard let checkpoint = sftResult.lastCheckpoint ?? Checkpoints.newest(in: "\(folder)/sft/checkpoints") else {
            throw TrainingError("hydra-sft left no checkpoint in \(folder)/sft")
        }
        sayRankZero("== stage 2/2: ppo from \(checkpoint)")
        let ppoConfig = try PPOConfig(try stage(config, schema: ppoSchema, prefix: "rl.", overrides: ["out=\(folder)/ppo", "model.init_from=\(checkpoint)"]))
        let ppo = PPOStage(config: ppoConfig, transport: transport, workingDirectory: workingDirectory, say: say)
        onStage("ppo", ppo.context)
        let ppoResult = try await ppo.run()
        return Result(sftExactMatch: ppoResult.initialExactMatch ?? sftResult.finalEval?.exactMatch, ppoExactMatch: ppoResult.finalExactMatch,
                      kl: ppoResult.kl, seconds: Date().timeIntervalSince(started), runFolder: folder)
    }
}
