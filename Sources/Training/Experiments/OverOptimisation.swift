import Cluster
import Config
import Datasets
import Foundation
import Rewards
import Runs

/// `rlhf overopt`: the reward over-optimisation study (Gao et al. 2023's setting on the arith task).
/// A hidden gold reward — the exact-answer verifier plus the bare-integer format rule — labels
/// samples of pairs of the SFT policy's own responses, with label noise; proxy reward models are
/// trained on those pairs from the SFT model (LoRA merged into their own trunk, or with
/// proxy.rm.train_trunk false the head alone on the shared trunk); PPO then optimises a reward made from them
/// (one proxy, their mean, R2M, LASeR and its baselines, or the hybrid routing) while
/// metrics.jsonl logs gold and proxy reward against KL. Every method runs on every seed of
/// `study.seeds`; a seed's SFT model, pairs, proxies and GenRM are shared by its methods.
/// One YAML file: shared keys at the top level, the SFT stage under `sft.`, the proxies under
/// `proxy.` (rm keys), PPO under `rl.`, the GenRM under `genrm.`, the study's own under `study.`.
public enum OverOptimisation {
    static let sharedKeys = CommonKeys.run + CommonKeys.data
    static let shared = Set(sharedKeys.map(\.path))

    /// A compared method: which reward PPO optimises.
    public enum Method: Hashable, Sendable, CustomStringConvertible {
        /// Proxy K alone (1-based); "proxy" is proxy 1.
        case proxy(Int)
        /// The mean of the study's proxies.
        case ensemble
        /// R2M on proxy 1; its ablations without the policy's states (ω = 1, the paper's
        /// "Iterative RMHead") and without the update ("w/o Train").
        case r2m, r2mNoFeedback, r2mNoUpdate
        /// LinUCB over the proxies, and its uniformly random baseline.
        case laser, random
        /// The hybrid routing (verifier, GenRM with the answer, GenRM against best-of-N); with
        /// Pre-PPO (the hardest prompts by the whole reward) and the verifier-first curriculum.
        case hybrid, hybridPrePPO

        static let named: [String: Method] = [
            "proxy": .proxy(1), "ensemble": .ensemble, "r2m": .r2m, "r2m_no_feedback": .r2mNoFeedback,
            "r2m_no_update": .r2mNoUpdate, "laser": .laser, "random": .random, "hybrid": .hybrid,
            "hybrid_prepo": .hybridPrePPO,
        ]

        public init?(name: String) {
            if let m = Self.named[name] {
                self = m
                return
            }
            guard name.hasPrefix("proxy"), let k = Int(name.dropFirst(5)), k >= 1 else { return nil }
            self = .proxy(k)
        }

        public var description: String {
            if case .proxy(let k) = self { return k == 1 ? "proxy" : "proxy\(k)" }
            return Self.named.first { $0.value == self }!.key
        }

        var selection: RewardSelection {
            switch self {
            case .proxy, .ensemble, .hybrid, .hybridPrePPO: return .mean
            case .r2m, .r2mNoFeedback, .r2mNoUpdate: return .r2m
            case .laser: return .laser
            case .random: return .random
            }
        }

        /// The reward source PPO optimises (its reward_<name>_mean is the summary's "proxy").
        var trainedSource: String {
            switch self {
            case .r2m, .r2mNoFeedback, .r2mNoUpdate: return "r2m"
            case .hybrid, .hybridPrePPO: return "hybrid"
            default: return "proxy"
            }
        }

        /// The proxies (1-based) whose heads PPO reads, of `count` trained per seed.
        func heads(of count: Int) -> [Int] {
            switch self {
            case .proxy(let k): return [k]
            case .ensemble, .laser, .random: return Array(1...count)
            default: return [1]
            }
        }
    }

    /// The study's own keys.
    public struct Settings: Sendable {
        static let methods = Key<String>(
            "study.methods", "proxy",
            "comma-separated methods: proxy (proxy 1), proxyK, ensemble, r2m, r2m_no_feedback, r2m_no_update, laser, "
                + "random, hybrid, hybrid_prepo"
        )
        static let seeds = Key<String>(
            "study.seeds", "",
            "comma-separated run seeds; every method runs on each (SFT, pairs, proxies and PPO seeded by it); empty: "
                + "'seed'"
        )
        static let verifierShare = Key<Double>(
            "study.verifier_share", 0.4, "hybrid: share of prompts whose task has a verifier", .within(0, 1))
        static let referenceShare = Key<Double>(
            "study.reference_share", 0.3,
            "hybrid: share judged by the GenRM against the answer; the rest against the proxy's best of N",
            .within(0, 1))
        static let sftFrom = Key<ConfigPath>(
            "study.sft_from", "", "start every seed from this SFT checkpoint instead of training one")
        static let proxies = Key<Int>(
            "study.proxies", 3,
            "proxy heads trained per seed (each on its own noisy sample); ensemble, laser and random read them all",
            .atLeast(1))
        static let pairs = Key<Int>("study.pairs", 300, "gold-labelled pairs per proxy", .positive)
        static let noise = Key<Double>("study.noise", 0.2, "share of the proxies' pair labels flipped", .within(0, 1))
        static let temperature = Key<Double>(
            "study.temperature", 1, "sampling temperature of the SFT responses the pairs compare", .positive)
        static let smooth = Key<Int>("study.smooth", 5, "iterations averaged for gold_peak and gold_final", .positive)
        static let prepoKeep = Key<Double>(
            "study.prepo_keep", 0.25, "hybrid_prepo: the share of study.prepo_candidates prompts Pre-PPO keeps",
            .within(0, 1))
        static let prepoCandidates = Key<Int>(
            "study.prepo_candidates", 1024, "hybrid_prepo: the prompts Pre-PPO scores", .positive)
        static let curriculumShare = Key<Double>(
            "study.curriculum_share", 0.2,
            "hybrid_prepo: the share of the iterations that draw the verifier's (arith) prompts only", .within(0, 1))
        static let keys =
            [methods, seeds].map(\.declaration) + [verifierShare, referenceShare].map(\.declaration) + [
                sftFrom.declaration
            ]
            + [proxies, pairs].map(\.declaration) + [noise, temperature].map(\.declaration) + [smooth.declaration]
            + [prepoKeep.declaration, prepoCandidates.declaration, curriculumShare.declaration]

        public var methods: [Method], seeds: [Int], verifierShare: Double, referenceShare: Double, sftFrom: String,
            proxies: Int, pairs: Int
        public var noise: Double, temperature: Float, smooth: Int, prepoKeep: Double, prepoCandidates: Int,
            curriculumShare: Double
        /// Keys each method sets itself (set in the file or an override they would be overwritten).
        static let setByMethods = [
            "rl.rewards.selection", "rl.rewards.proxy_heads", "rl.rewards.proxy", "rl.rewards.verifier",
            "rl.rewards.format",
            "rl.rewards.reward_head", "rl.rewards.hybrid", "rl.rewards.genrm_model", "rl.rewards.verifier_tasks",
            "rl.rewards.reference_tasks", "rl.laser.arms", "rl.r2m.policy_feedback", "rl.r2m.update",
            "rl.prepo.keep", "rl.prepo.candidates", "rl.curriculum.tasks", "rl.curriculum.share",
        ]

        init(_ c: ResolvedConfig) throws {
            for key in Self.setByMethods where (c.sources[key] ?? "default") != "default" {
                throw ConfigError(
                    "\(c.sources[key]!): '\(key)' is set by each method of study.methods; remove it (the study's own "
                        + "keys are study.*)")
            }
            methods = try Self.parseMethods(c)
            seeds = try Self.parseSeeds(c)
            verifierShare = c[Self.verifierShare]
            referenceShare = c[Self.referenceShare]
            sftFrom = c[Self.sftFrom].path
            proxies = c[Self.proxies]
            pairs = c[Self.pairs]
            noise = c[Self.noise]
            temperature = Float(c[Self.temperature])
            smooth = c[Self.smooth]
            prepoKeep = c[Self.prepoKeep]
            prepoCandidates = c[Self.prepoCandidates]
            curriculumShare = c[Self.curriculumShare]
            try checkMethods()
        }

        /// study.methods: known names, none twice (proxy and proxy1 are the same method).
        static func parseMethods(_ c: ResolvedConfig) throws -> [Method] {
            let methods = try commaList(c[Self.methods]).map { name in
                guard let m = Method(name: name) else {
                    throw ConfigError(
                        "'study.methods': '\(name)' is not a method (proxy, proxyK, "
                            + "\(Method.named.keys.filter { $0 != "proxy" }.sorted().joined(separator: ", ")))")
                }
                return m
            }
            guard !methods.isEmpty else { throw ConfigError("'study.methods' names no method") }
            try refuseRepeats("study.methods", methods.map(\.description))
            return methods
        }

        /// study.seeds (or the run's seed), none twice; both set is a contradiction.
        static func parseSeeds(_ c: ResolvedConfig) throws -> [Int] {
            let seeds = try commaList(c[Self.seeds]).map { text in
                guard let s = Int(text), s >= 0 else {
                    throw ConfigError("'study.seeds': '\(text)' is not a seed (a whole number ≥ 0)")
                }
                return s
            }
            guard !seeds.isEmpty else { return [c[RunSettings.seed]] }
            if (c.sources[RunSettings.seed.path] ?? "default") != "default" {
                throw ConfigError(
                    "\(c.sources[RunSettings.seed.path]!): 'seed' and 'study.seeds' are both set; the study runs on "
                        + "study.seeds")
            }
            try refuseRepeats("study.seeds", seeds.map(String.init))
            return seeds
        }

        /// A repeat would run twice into one folder.
        static func refuseRepeats(_ key: String, _ names: [String]) throws {
            if let repeated = names.first(where: { n in names.filter { $0 == n }.count > 1 }) {
                throw ConfigError("'\(key)': \(repeated) appears twice")
            }
        }

        /// What each method needs of the other study keys.
        func checkMethods() throws {
            for case .proxy(let k) in methods where k > proxies {
                throw ConfigError("'study.methods': proxy\(k) needs study.proxies ≥ \(k) (it is \(proxies))")
            }
            for m in [Method.ensemble, .laser, .random] where methods.contains(m) && proxies < 2 {
                throw ConfigError("'study.methods': \(m) chooses among or averages the proxies: set study.proxies ≥ 2")
            }
            guard verifierShare + referenceShare <= 1 else {
                throw ConfigError(
                    "'study.verifier_share' + 'study.reference_share' is \(verifierShare + referenceShare); the "
                        + "shares of prompts add up to at most 1")
            }
            guard methods.contains(.hybridPrePPO) else { return }
            guard prepoKeep > 0 else {
                throw ConfigError(
                    "'study.prepo_keep' is 0: hybrid_prepo keeps the hardest share of the prompts; set it above 0")
            }
            guard curriculumShare == 0 || verifierShare > 0 else {
                throw ConfigError(
                    "'study.curriculum_share' draws the verifier's (arith) prompts first, but "
                        + "study.verifier_share is 0: no prompt has that task")
            }
        }
        /// Proxies trained per seed: as many as any method reads.
        var proxiesTrained: Int { methods.flatMap { $0.heads(of: proxies) }.max() ?? 1 }
    }

    public static let schema = ConfigSchema(
        sharedKeys + Settings.keys
            + Pipeline.nested(sftSchema, under: "sft.", shared: shared)
            + Pipeline.nested(rmSchema, under: "proxy.", shared: shared)
            + Pipeline.nested(ppoSchema, under: "rl.", shared: shared)
            + Pipeline.nested(sftSchema, under: "genrm.", shared: shared))

    /// Runs every method on every seed; `report` receives each run's result as it ends (rank 0).
    public static func run(
        _ config: ResolvedConfig, transport: any Transport,
        workingDirectory: String = FileManager.default.currentDirectoryPath,
        say: @escaping (String) -> Void = { Console.note($0) }, onStage: (String, FailureContext) -> Void = { _, _ in },
        report: (Result) -> Void = { _ in }
    ) async throws -> Study {
        let study = try Settings(config), data = try DataSettings(config), run = try RunSettings(config)
        guard data.task == .arith else {
            throw ConfigError("the over-optimisation study runs on the arith task: set data.task: arith")
        }
        // the PPO keys are checked before any stage runs
        _ = try config.scoped(to: ppoSchema, prefix: "rl.", shared: shared)
        let folder = try await RunFolder.chooseCollectively(
            name: run.name, out: run.out, resume: .never,
            workingDirectory: workingDirectory, transport: transport
        ).folder.path
        if transport.rank == 0 {
            try RunFolder(path: folder).writeConfig(config.yaml)
            try Console.openLog(RunFolder(path: folder).log, slot: .experiment)
        }
        let sayRankZero: (String) -> Void = { if transport.rank == 0 { say($0) } }
        sayRankZero(
            "overopt: \(study.methods.map(\.description).joined(separator: ", ")) × seeds "
                + "\(study.seeds.map(String.init).joined(separator: ", ")); run folder \(folder)"
        )
        var results: [Result] = []
        for seed in study.seeds {
            let seedConfig = try config.with(RunSettings.seed, seed)
            let setup = try await prepareSeed(
                seedConfig, study: study, seed: seed, folder: "\(folder)/seed-\(seed)", transport: transport,
                workingDirectory: workingDirectory, say: say, onStage: onStage)
            for method in study.methods {
                let result = try await runMethod(
                    method, seed: seed, setup: setup, config: seedConfig, study: study, transport: transport,
                    workingDirectory: workingDirectory, say: say, onStage: onStage)
                results.append(result)
                if transport.rank == 0 {
                    try JSONL.write(results.map(\.json), to: folder + "/results.jsonl")
                    report(result)
                }
            }
        }
        let summary = Study(folder: folder, results: results, methods: study.methods.map(\.description))
        if transport.rank == 0 { try summary.write() }
        return summary
    }

    /// What a seed's methods share: the SFT model, the proxies' checkpoints, the GenRM and the hybrid data.
    struct SeedSetup { var folder: String, sftModel: String, proxies: [String], genrm: String? }

    static func prepareSeed(
        _ config: ResolvedConfig, study: Settings, seed: Int, folder: String, transport: any Transport,
        workingDirectory: String,
        say: @escaping (String) -> Void, onStage: (String, FailureContext) -> Void
    ) async throws -> SeedSetup {
        let data = try DataSettings(config)
        let sayRankZero: (String) -> Void = { if transport.rank == 0 { say($0) } }
        if transport.rank == 0 {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        try await transport.barrier()
        // 1. The SFT model.
        var sftModel = study.sftFrom
        if sftModel.isEmpty {
            sayRankZero("== seed \(seed): sft")
            let sft = SFTStage(
                config: try SFTConfig(
                    config.scoped(to: sftSchema, prefix: "sft.", shared: shared)
                        .with(RunSettings.out, ConfigPath(folder + "/sft")).with(RunSettings.resume, "never")),
                transport: transport, workingDirectory: workingDirectory, say: say)
            guard let checkpoint = try await runStage(sft, as: "sft", onStage: onStage).lastCheckpoint else {
                throw TrainingError("sft left no checkpoint in \(folder)")
            }
            sftModel = checkpoint
        }
        // 2. Gold-labelled pairs of the SFT policy's responses (rank 0 writes them; all read).
        let rl = try config.scoped(to: ppoSchema, prefix: "rl.", shared: shared)
        let pairFiles = (0..<study.proxiesTrained).map { "\(folder)/gold_pairs_\($0 + 1).jsonl" }
        if transport.rank == 0 {
            try writeGoldPairs(
                study, task: data.arithTask, seed: UInt64(seed), maxNewTokens: rl[PPOSettings.maxNewTokens],
                sftModel: sftModel, files: pairFiles, say: say)
        }
        try await transport.barrier()
        // 3. Proxy reward models from the SFT model, one per noisy sample (proxy.* rm keys: LoRA or the head alone).
        let stages = SeedStages(
            config: config, seed: seed, folder: folder, sftModel: sftModel, transport: transport,
            workingDirectory: workingDirectory, say: say)
        let heads = try await stages.trainProxies(pairFiles, onStage: onStage)
        // 4. Hybrid: the generative reward model (SFT on judgement data from the SFT model) and
        //    prompts whose tasks route them to the verifier, the GenRM with the answer, or best-of-N.
        var genrm: String?
        if study.methods.contains(.hybrid) || study.methods.contains(.hybridPrePPO) {
            if transport.rank == 0 {
                try writeHybridData(data.arithTask, study: study, seed: UInt64(seed), folder: folder)
            }
            try await transport.barrier()
            genrm = try await stages.trainGenRM(onStage: onStage)
        }
        return SeedSetup(folder: folder, sftModel: sftModel, proxies: heads, genrm: genrm)
    }

    /// The reward models of one seed, trained from its SFT model.
    struct SeedStages {
        let config: ResolvedConfig, seed: Int, folder: String, sftModel: String
        let transport: any Transport, workingDirectory: String
        let say: (String) -> Void

        func sayRankZero(_ line: String) { if transport.rank == 0 { say(line) } }

        /// One proxy reward model per file of gold-labelled pairs (rm with the proxy.* keys).
        func trainProxies(_ pairFiles: [String], onStage: (String, FailureContext) -> Void) async throws -> [String] {
            var heads: [String] = []
            for (k, file) in pairFiles.enumerated() {
                sayRankZero("== seed \(seed): proxy \(k + 1)/\(pairFiles.count)")
                let rm = SFTStage(
                    config: try SFTConfig(
                        config.scoped(to: rmSchema, prefix: "proxy.", shared: shared)
                            // Not "proxyK": that is the folder of the method that optimises this proxy.
                            .with(RunSettings.out, ConfigPath("\(folder)/reward-proxy\(k + 1)")).with(
                                RunSettings.resume, "never"
                            )
                            .with(RunSettings.initFrom, ConfigPath(sftModel)).with(DataSettings.task, DataTask.none)
                            .with(DataSettings.prefs, ConfigPath(file)).with(RunSettings.seed, seed &* 1000 &+ k)),
                    transport: transport, workingDirectory: workingDirectory, say: say)
                guard let checkpoint = try await runStage(rm, as: "proxy\(k + 1)", onStage: onStage).lastCheckpoint
                else {
                    throw TrainingError("proxy \(k + 1) left no checkpoint")
                }
                heads.append(checkpoint)
            }
            return heads
        }

        /// The generative reward model: SFT (genrm.* keys) on the judgement data in the seed's folder.
        func trainGenRM(onStage: (String, FailureContext) -> Void) async throws -> String {
            sayRankZero("== seed \(seed): genrm")
            let stage = SFTStage(
                config: try SFTConfig(
                    config.scoped(to: sftSchema, prefix: "genrm.", shared: shared)
                        .with(RunSettings.out, ConfigPath(folder + "/genrm")).with(RunSettings.resume, "never")
                        .with(RunSettings.initFrom, ConfigPath(sftModel)).with(DataSettings.task, DataTask.none)
                        .with(DataSettings.train, ConfigPath(folder + "/judge.jsonl"))
                        .with(DataSettings.eval, ConfigPath(folder + "/eval_judge.jsonl"))),
                transport: transport, workingDirectory: workingDirectory, say: say)
            guard let judge = try await runStage(stage, as: "genrm", onStage: onStage).lastCheckpoint else {
                throw TrainingError("genrm left no checkpoint")
            }
            return judge
        }
    }

    /// PPO against the method's reward; the gold reward is logged, never optimised.
    static func runMethod(
        _ method: Method, seed: Int, setup: SeedSetup, config: ResolvedConfig, study: Settings,
        transport: any Transport,
        workingDirectory: String, say: @escaping (String) -> Void, onStage: (String, FailureContext) -> Void
    ) async throws -> Result {
        let started = Date(), out = "\(setup.folder)/\(method)"
        let heads = method.heads(of: study.proxies).map { setup.proxies[$0 - 1] }
        var ppoConfig = try config.scoped(to: ppoSchema, prefix: "rl.", shared: shared)
            .with(RunSettings.out, ConfigPath(out)).with(RunSettings.resume, "never")
            .with(RunSettings.initFrom, ConfigPath(setup.sftModel)).with(
                RewardSettings.proxyHeads, heads.joined(separator: ",")
            )
            .with(RewardSettings.selection, method.selection)
            .with(RewardSettings.proxy, 1).with(RewardSettings.verifier, 0).with(RewardSettings.format, 0).with(
                RewardSettings.rewardHead, 0)
        if method == .r2mNoFeedback { ppoConfig = try ppoConfig.with(R2MSettings.policyFeedback, false) }
        if method == .r2mNoUpdate { ppoConfig = try ppoConfig.with(R2MSettings.update, false) }
        if method == .hybrid || method == .hybridPrePPO, let judge = setup.genrm {
            ppoConfig = try ppoConfig.with(RewardSettings.hybrid, 1).with(RewardSettings.proxy, 0).with(
                RewardSettings.genrmModel, ConfigPath(judge)
            )
            .with(RewardSettings.verifierTasks, "arith").with(RewardSettings.referenceTasks, "arith-ref").with(
                DataSettings.task, DataTask.none
            )
            .with(DataSettings.train, ConfigPath(setup.folder + "/prompts.jsonl")).with(
                DataSettings.eval, ConfigPath(setup.folder + "/eval.jsonl"))
        }
        // Shen et al. 2025's combination: the hardest prompts by the whole reward, the
        // verifier's (math) prompts first.
        if method == .hybridPrePPO {
            ppoConfig = try ppoConfig.with(PromptSelectionSettings.keep, study.prepoKeep).with(
                PromptSelectionSettings.candidates, study.prepoCandidates)
            if study.curriculumShare > 0 {
                ppoConfig = try ppoConfig.with(PromptSelectionSettings.curriculumTasks, "arith").with(
                    PromptSelectionSettings.curriculumShare, study.curriculumShare)
            }
        }
        if transport.rank == 0 { say("== seed \(seed): ppo (\(method))") }
        let ppo = PPOStage(
            config: try PPOConfig(ppoConfig), transport: transport, workingDirectory: workingDirectory, say: say)
        _ = try await runStage(ppo, as: "ppo", onStage: onStage)
        var result = Result(method: method.description, seed: seed, runFolder: out)
        if transport.rank == 0 {
            try result.summarise(
                metrics: "\(out)/metrics.jsonl", trained: "reward_\(method.trainedSource)_mean", smooth: study.smooth)
        }
        result.seconds = Date().timeIntervalSince(started)
        return result
    }
}
