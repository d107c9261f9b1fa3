import Alignment
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

    /// The study's own keys.
    public struct Settings: Sendable {
        static let methods = Key<String>(
            "study.methods", "proxy",
            "comma-separated methods: proxy (proxy 1), proxyK, ensemble, r2m, r2m_no_feedback, r2m_no_update, laser, "
                + "random, hybrid, hybrid_gold, verifier_proxy, hybrid_prepo, hybrid_prepo_only, hybrid_curriculum, "
                + "hybrid_random_subset; each may add +key=value overrides of its rl.* keys (laser+laser.alpha=1)"
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
        static let proxySlices = Key<ProxySlices>(
            "study.proxy_slices", .none,
            "what each proxy knows: none, every proxy on pairs of all prompts; size, proxy k of K on the k-th band "
                + "of the prompts by the sum's size; carry, odd proxies on sums that carry, even ones on sums that do "
                + "not"
        )
        static let fairVerifier = Key<String>(
            "study.fair_verifier", "last_digit+format",
            "the fair hybrid's verifier on the arith route: rules that are not the gold's (hybrid_gold: exact+format)")
        static let genrmBudget = Key<Int>(
            "study.genrm_judgements", 0,
            "judgements the fair GenRM is trained on, with study.noise of them flipped (0: study.pairs, the proxies' "
                + "budget); hybrid_gold's GenRM has every training problem's, noise-free", .nonNegative)
        static let heldoutPairs = Key<Int>(
            "study.heldout_pairs", 200,
            "noise-free gold-labelled pairs on held-out prompts (r2m methods log the fused reward's accuracy on them)",
            .positive)
        static let keys =
            [methods, seeds].map(\.declaration) + [verifierShare, referenceShare].map(\.declaration) + [
                sftFrom.declaration
            ]
            + [proxies, pairs].map(\.declaration) + [noise, temperature].map(\.declaration) + [smooth.declaration]
            + [prepoKeep.declaration, prepoCandidates.declaration, curriculumShare.declaration]
            + [proxySlices.declaration, fairVerifier.declaration, genrmBudget.declaration, heldoutPairs.declaration]

        public var methods: [MethodSpec], seeds: [Int], verifierShare: Double, referenceShare: Double,
            sftFrom: String, proxies: Int, pairs: Int
        public var noise: Double, temperature: Float, smooth: Int, prepoKeep: Double, prepoCandidates: Int,
            curriculumShare: Double
        public var proxySlices: ProxySlices, fairVerifier: String, genrmJudgements: Int, heldoutPairs: Int
        /// Keys each method sets itself (set in the file or an override they would be overwritten).
        static let setByMethods = [
            "rl.rewards.selection", "rl.rewards.proxy_heads", "rl.rewards.proxy", "rl.rewards.verifier",
            "rl.rewards.format",
            "rl.rewards.reward_head", "rl.rewards.hybrid", "rl.rewards.genrm_model", "rl.rewards.verifier_tasks",
            "rl.rewards.reference_tasks", "rl.laser.arms", "rl.r2m.policy_feedback", "rl.r2m.update",
            "rl.prepo.keep", "rl.prepo.candidates", "rl.curriculum.tasks", "rl.curriculum.share",
            "rl.rewards.proxy_tasks", "rl.prepo.rule", "rl.r2m.heldout_pairs",
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
            proxySlices = c[Self.proxySlices]
            fairVerifier = c[Self.fairVerifier]
            genrmJudgements = c[Self.genrmBudget] > 0 ? c[Self.genrmBudget] : pairs
            heldoutPairs = c[Self.heldoutPairs]
            do { _ = try Verifiers.routes("arith=" + fairVerifier) } catch {
                throw ConfigError("'study.fair_verifier': \(error)")
            }
            try checkMethods()
            try checkMethodConfigs(c.scoped(to: ppoSchema, prefix: "rl.", shared: shared))
        }

        /// Every method's PPO configuration is built once at load (placeholder paths), so that an
        /// override or a combination PPO refuses stops the study before its first stage.
        func checkMethodConfigs(_ ppo: ResolvedConfig) throws {
            let setup = SeedSetup(
                folder: "/study/seed", sftModel: "/study/sft", proxies: (1...proxies).map { "/study/proxy\($0)" },
                genrmFair: "/study/genrm", genrmGold: "/study/genrm-gold", heldoutPairs: "/study/heldout.jsonl")
            for spec in methods {
                do {
                    _ = try PPOConfig(
                        methodConfig(
                            spec, setup: setup, study: self,
                            base: ppo.with(RunSettings.out, ConfigPath("/study/seed/\(spec)"))))
                } catch { throw ConfigError("'study.methods': \(spec): \(error)") }
            }
        }

        /// study.methods: known names with valid overrides, none twice (proxy and proxy1 are the same method).
        static func parseMethods(_ c: ResolvedConfig) throws -> [MethodSpec] {
            let ppo = c.scoped(to: ppoSchema, prefix: "rl.", shared: shared)
            let methods = try commaList(c[Self.methods]).map { try MethodSpec(parsing: $0, ppo: ppo) }
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
            let methods = self.methods.map(\.method)
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
            if methods.contains(where: \.keepsPrompts) && prepoKeep <= 0 {
                throw ConfigError(
                    "'study.prepo_keep' is 0: hybrid_prepo keeps the hardest share of the prompts; set it above 0")
            }
            if methods.contains(.curriculumOnly) && curriculumShare == 0 {
                throw ConfigError("'study.curriculum_share' is 0: hybrid_curriculum has no curriculum; set it above 0")
            }
            guard methods.contains(where: \.usesCurriculum) else { return }
            guard curriculumShare == 0 || verifierShare > 0 else {
                throw ConfigError(
                    "'study.curriculum_share' draws the verifier's (arith) prompts first, but "
                        + "study.verifier_share is 0: no prompt has that task")
            }
        }
        /// Proxies trained per seed: as many as any method reads.
        var proxiesTrained: Int { methods.flatMap { $0.method.heads(of: proxies) }.max() ?? 1 }
        func uses(_ test: (Method) -> Bool) -> Bool { methods.contains { test($0.method) } }
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

    /// What a seed's methods share: the SFT model, the proxies' checkpoints, the GenRMs (fair: the
    /// proxies' budget and noise; gold: every judgement, noise-free), the held-out gold pairs and the hybrid data.
    struct SeedSetup {
        var folder: String, sftModel: String, proxies: [String], genrmFair: String?, genrmGold: String?
        var heldoutPairs: String
    }

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
        let heldoutPairs = "\(folder)/gold_pairs_heldout.jsonl"
        if transport.rank == 0 {
            try writeGoldPairs(
                study, task: data.arithTask, seed: UInt64(seed), maxNewTokens: rl[PPOSettings.maxNewTokens],
                sftModel: sftModel, files: pairFiles, heldout: study.uses(\.isR2M) ? heldoutPairs : nil, say: say)
        }
        try await transport.barrier()
        // 3. Proxy reward models from the SFT model, one per noisy sample (proxy.* rm keys: LoRA or the head alone).
        let stages = SeedStages(
            config: config, seed: seed, folder: folder, sftModel: sftModel, transport: transport,
            workingDirectory: workingDirectory, say: say)
        let heads = try await stages.trainProxies(pairFiles, onStage: onStage)
        // 4. Hybrid: the generative reward model (SFT on judgement data from the SFT model) and
        //    prompts whose tasks route them to the verifier, the GenRM with the answer, or best-of-N.
        var setup = SeedSetup(
            folder: folder, sftModel: sftModel, proxies: heads, genrmFair: nil, genrmGold: nil,
            heldoutPairs: heldoutPairs)
        if study.uses(\.isRouted) {
            if transport.rank == 0 {
                try writeHybridData(data.arithTask, study: study, seed: UInt64(seed), folder: folder)
            }
            try await transport.barrier()
            (setup.genrmFair, setup.genrmGold) = try await stages.trainGenRMs(study, onStage: onStage)
        }
        return setup
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

        /// The fair GenRM (the proxies' budget and noise) and hybrid_gold's (every judgement), as methods need them.
        func trainGenRMs(_ study: Settings, onStage: (String, FailureContext) -> Void) async throws -> (
            fair: String?, gold: String?
        ) {
            let fair =
                study.uses(\.usesFairGenRM)
                ? try await trainGenRM(judgements: "judge_budget.jsonl", out: "genrm", onStage: onStage) : nil
            let gold =
                study.uses { $0 == .hybridGold }
                ? try await trainGenRM(judgements: "judge.jsonl", out: "genrm-gold", onStage: onStage) : nil
            return (fair, gold)
        }

        /// A generative reward model: SFT (genrm.* keys) on a judgement file in the seed's folder, into `out`.
        func trainGenRM(judgements: String, out: String, onStage: (String, FailureContext) -> Void) async throws
            -> String
        {
            sayRankZero("== seed \(seed): \(out) (\(judgements))")
            let stage = SFTStage(
                config: try SFTConfig(
                    config.scoped(to: sftSchema, prefix: "genrm.", shared: shared)
                        .with(RunSettings.out, ConfigPath("\(folder)/\(out)")).with(RunSettings.resume, "never")
                        .with(RunSettings.initFrom, ConfigPath(sftModel)).with(DataSettings.task, DataTask.none)
                        .with(DataSettings.train, ConfigPath("\(folder)/\(judgements)"))
                        .with(DataSettings.eval, ConfigPath(folder + "/eval_judge.jsonl"))),
                transport: transport, workingDirectory: workingDirectory, say: say)
            guard let judge = try await runStage(stage, as: out, onStage: onStage).lastCheckpoint else {
                throw TrainingError("\(out) left no checkpoint")
            }
            return judge
        }
    }

    /// PPO against the method's reward; the gold reward is logged, never optimised.
    static func runMethod(
        _ spec: MethodSpec, seed: Int, setup: SeedSetup, config: ResolvedConfig, study: Settings,
        transport: any Transport,
        workingDirectory: String, say: @escaping (String) -> Void, onStage: (String, FailureContext) -> Void
    ) async throws -> Result {
        let started = Date(), out = "\(setup.folder)/\(spec)", method = spec.method
        let ppoConfig = try methodConfig(
            spec, setup: setup, study: study,
            base: config.scoped(to: ppoSchema, prefix: "rl.", shared: shared).with(RunSettings.out, ConfigPath(out)))
        if transport.rank == 0 { say("== seed \(seed): ppo (\(spec))") }
        let ppo = PPOStage(
            config: try PPOConfig(ppoConfig), transport: transport, workingDirectory: workingDirectory, say: say)
        _ = try await runStage(ppo, as: "ppo", onStage: onStage)
        var result = Result(method: spec.description, seed: seed, runFolder: out)
        if transport.rank == 0 {
            try result.summarise(
                metrics: "\(out)/metrics.jsonl", trained: "reward_\(method.trainedSource)_mean", smooth: study.smooth,
                arms: [.laser, .random].contains(method.selection) ? method.heads(of: study.proxies).count : nil)
        }
        result.seconds = Date().timeIntervalSince(started)
        return result
    }
}
