import Alignment
import Cluster
import Config
import Foundation
import Runs

/// `rlhf prefs`: one SFT model, then one `dpo` stage per listed loss from it, and a table
/// (markdown and JSON) of held-out exact match, implicit-reward accuracy, KL to the SFT model
/// and wall time. One YAML file: shared keys at the top level, the SFT stage's keys under
/// `sft.`, every preference run's keys under `prefs.`, and per-loss overrides as strings under
/// `compare.overrides.<loss>` (e.g. "dpo.beta=0.5 train.lr=1e-4").
public enum PreferenceComparison {
    static let sharedKeys = CommonKeys.run + CommonKeys.data
    static let shared = Set(sharedKeys.map(\.path))
    static let lossesKey = Key<String>(
        "compare.losses", "dpo,ipo,cpl,inspo", "comma-separated dpo.loss values, one run each")
    static let sftFrom = Key<ConfigPath>(
        "compare.sft_from", "", "start from this SFT checkpoint instead of training one")
    static func overridesKey(_ loss: PreferenceLossName) -> Key<String> {
        Key("compare.overrides.\(loss.rawValue)", "", "space-separated key=value overrides of the \(loss.rawValue) run")
    }

    public static let schema = ConfigSchema(
        sharedKeys + [lossesKey.declaration, sftFrom.declaration]
            + PreferenceLossName.allCases.map { overridesKey($0).declaration }
            + Pipeline.nested(sftSchema, under: "sft.", shared: shared)
            + Pipeline.nested(dpoSchema, under: "prefs.", shared: shared.union([PreferenceSettings.loss.path])))

    public struct Row: Sendable {
        public var loss: String
        public var sftExactMatch: Double?, exactMatch: Double?, conditionedExactMatch: Double?
        public var rewardAccuracy: Double?, kl: Double?
        public var seconds: Double
        public var json: [String: Any] {
            var o: [String: Any] = [
                "loss": loss, "sft_exact_match": sftExactMatch ?? NSNull(), "exact_match": exactMatch ?? NSNull(),
                "reward_accuracy": rewardAccuracy ?? NSNull(), "kl": kl ?? NSNull(), "seconds": seconds,
            ]
            if let c = conditionedExactMatch { o["conditioned_exact_match"] = c }
            return o
        }
    }

    public struct Result: Sendable {
        public var rows: [Row]
        public var runFolder: String
        public var sftSeconds: Double
    }

    public static func run(
        _ config: ResolvedConfig, transport: any Transport,
        workingDirectory: String = FileManager.default.currentDirectoryPath,
        say: @escaping (String) -> Void = { Console.note($0) }, onStage: (String, FailureContext) -> Void = { _, _ in }
    ) async throws -> Result {
        let names = try commaList(config[lossesKey]).map { name in
            guard let loss = PreferenceLossName(rawValue: name) else {
                throw ConfigError(
                    "'compare.losses': '\(name)' is not one of "
                        + "\(PreferenceLossName.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            return loss
        }
        guard !names.isEmpty else { throw ConfigError("'compare.losses' lists no loss") }
        let overrides = Dictionary(
            uniqueKeysWithValues: PreferenceLossName.allCases.map {
                ($0, config[overridesKey($0)].split(separator: " ").map(String.init))
            })
        // Every loss's overrides are checked before anything runs, so a typo does not wait for its turn.
        let runs = config.scoped(to: dpoSchema, prefix: "prefs.", shared: shared.union([PreferenceSettings.loss.path]))
        for (loss, list) in overrides where !list.isEmpty {
            do { _ = try runs.overriding(list) } catch { throw ConfigError("'\(overridesKey(loss).path)': \(error)") }
        }
        let folder = try await RunFolder.chooseCollectively(
            name: config[RunSettings.name], out: config[RunSettings.out].path, resume: .never,
            workingDirectory: workingDirectory, transport: transport
        ).folder.path
        if transport.rank == 0 {
            try RunFolder(path: folder).writeConfig(config.yaml)
            try Console.openLog(RunFolder(path: folder).log, slot: .experiment)
        }
        let sayRankZero: (String) -> Void = { if transport.rank == 0 { say($0) } }

        // 1. The SFT model every run starts from.
        let sftStarted = Date()
        var sftModel = config[sftFrom].path
        if sftModel.isEmpty {
            sayRankZero("prefs: run folder \(folder)\n== sft")
            let sftConfig = try SFTConfig(
                config.scoped(to: sftSchema, prefix: "sft.", shared: shared)
                    .with(RunSettings.out, ConfigPath(folder + "/sft")).with(RunSettings.resume, "never"))
            let sft = SFTStage(config: sftConfig, transport: transport, workingDirectory: workingDirectory, say: say)
            let result = try await runStage(sft, as: "sft", onStage: onStage)
            guard let checkpoint = result.lastCheckpoint ?? Checkpoints.newest(in: "\(folder)/sft/checkpoints") else {
                throw TrainingError("sft left no checkpoint in \(folder)/sft")
            }
            sftModel = checkpoint
        }
        let sftSeconds = Date().timeIntervalSince(sftStarted)

        // 2. One preference run per loss, each from the SFT model.
        var rows: [Row] = []
        for loss in names {
            let name = loss.rawValue
            sayRankZero("== \(name) from \(sftModel)")
            let stageConfig = try DPOConfig(
                config.scoped(to: dpoSchema, prefix: "prefs.", shared: shared)
                    .with(RunSettings.out, ConfigPath("\(folder)/\(name)")).with(RunSettings.resume, "never")
                    .with(RunSettings.initFrom, ConfigPath(sftModel)).with(PreferenceSettings.loss, loss)
                    .overriding(overrides[loss] ?? []))
            let stage = DPOStage(
                config: stageConfig, transport: transport, workingDirectory: workingDirectory, say: say)
            let started = Date()
            let r = try await runStage(stage, as: name, onStage: onStage)
            rows.append(
                Row(
                    loss: stageConfig.objective.name,
                    sftExactMatch: r.initialEval?.exactMatch, exactMatch: r.finalEval?.exactMatch,
                    conditionedExactMatch: r.finalEval?.conditionedExactMatch,
                    rewardAccuracy: r.finalEval?.rewardAccuracy,
                    kl: r.finalEval?.kl, seconds: Date().timeIntervalSince(started)))
        }
        if transport.rank == 0 { try writeTable(rows, folder: folder, sftModel: sftModel) }
        try await transport.barrier()
        return Result(rows: rows, runFolder: folder, sftSeconds: sftSeconds)
    }

    /// table.md and table.json in the comparison's folder.
    static func writeTable(_ rows: [Row], folder: String, sftModel: String) throws {
        func percent(_ x: Double?) -> String { x.map { String(format: "%.1f%%", 100 * $0) } ?? "–" }
        var md = "# Offline preference optimisation from one SFT model\n\nSFT model: `\(sftModel)`\n\n"
        md +=
            "| loss | SFT exact match | exact match | conditioned on own draft | implicit-reward accuracy | KL to "
            + "SFT | seconds |\n"
        md += "|---|---|---|---|---|---|---|\n"
        for r in rows {
            md +=
                "| \(r.loss) | \(percent(r.sftExactMatch)) | \(percent(r.exactMatch)) | "
                + "\(percent(r.conditionedExactMatch)) | \(percent(r.rewardAccuracy)) | "
                + (r.kl.map { String(format: "%.3f", $0) } ?? "–") + String(format: " | %.1f |\n", r.seconds)
        }
        try md.write(toFile: (folder as NSString).appendingPathComponent("table.md"), atomically: true, encoding: .utf8)
        let data = try JSONSerialization.data(withJSONObject: rows.map(\.json), options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: (folder as NSString).appendingPathComponent("table.json")))
    }
}
