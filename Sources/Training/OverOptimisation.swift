import Alignment
import Cluster
import Config
import Datasets
import Foundation
import Kernels
import Models
import Rewards
import Runs
import Tokenizers

/// `rlhf overopt`: the reward over-optimisation study (issue 7; Gao et al. 2023's setting on the
/// arith task). A hidden gold reward — the exact-answer verifier plus the bare-integer format
/// rule — labels a small sample of pairs of the SFT policy's own responses, with label noise;
/// proxy reward heads are trained on those pairs, head only, on the SFT trunk; PPO then
/// optimises the proxy (plain, R2M, or LASeR over several proxies) while metrics.jsonl logs gold
/// and proxy reward against KL. One YAML file: shared keys at the top level, the SFT stage under
/// `sft.`, the proxies under `proxy.` (rm keys), PPO under `rl.`, the study's own under `study.`.
public enum OverOptimisation {
    static let sharedKeys = CommonKeys.run + CommonKeys.data
    static let shared = Set(sharedKeys.map(\.path))

    /// The methods compared: which reward PPO optimises.
    public enum Method: String, ConfigChoice {
        case proxy, r2m, laser, hybrid
        /// How PPO makes the proxy reward for this method (hybrid: the proxy only ranks best-of-N samples).
        var selection: RewardSelection { switch self { case .proxy, .hybrid: return .mean; case .r2m: return .r2m; case .laser: return .laser } }
        /// The reward source PPO optimises (its reward_<name>_mean is the "proxy" of the summary).
        var trainedSource: String { switch self { case .proxy, .laser: return "proxy"; case .r2m: return "r2m"; case .hybrid: return "hybrid" } }
    }

    /// The study's own keys.
    public struct Settings: Sendable {
        static let method = Key<Method>("study.method", .proxy,
                                        "proxy: PPO on one proxy; r2m: that proxy fused with the policy's states and updated online; laser: LinUCB over study.proxies proxies; hybrid: verifier / GenRM routing")
        static let verifierShare = Key<Double>("study.verifier_share", 0.4, "hybrid: share of prompts whose task has a verifier", .within(0, 1))
        static let referenceShare = Key<Double>("study.reference_share", 0.3, "hybrid: share judged by the GenRM against the answer; the rest against the proxy's best of N", .within(0, 1))
        static let sftFrom = Key<ConfigPath>("study.sft_from", "", "start from this SFT checkpoint instead of training one")
        static let proxies = Key<Int>("study.proxies", 3, "proxy heads trained (each on its own noisy sample); proxy and r2m use the first", .atLeast(1))
        static let pairs = Key<Int>("study.pairs", 300, "gold-labelled pairs per proxy", .positive)
        static let noise = Key<Double>("study.noise", 0.2, "share of the proxies' pair labels flipped", .within(0, 1))
        static let temperature = Key<Double>("study.temperature", 1, "sampling temperature of the SFT responses the pairs compare", .positive)
        static let smooth = Key<Int>("study.smooth", 5, "iterations averaged for gold_peak and gold_final", .positive)
        static let keys = [method.declaration] + [verifierShare, referenceShare].map(\.declaration) + [sftFrom.declaration]
            + [proxies, pairs].map(\.declaration) + [noise, temperature].map(\.declaration) + [smooth.declaration]

        public var method: Method, verifierShare: Double, referenceShare: Double, sftFrom: String, proxies: Int, pairs: Int
        public var noise: Double, temperature: Float, smooth: Int
        init(_ c: ResolvedConfig) {
            method = c[Self.method]; verifierShare = c[Self.verifierShare]; referenceShare = c[Self.referenceShare]; sftFrom = c[Self.sftFrom].path
            proxies = c[Self.proxies]; pairs = c[Self.pairs]; noise = c[Self.noise]; temperature = Float(c[Self.temperature]); smooth = c[Self.smooth]
        }
    }

    public static let schema = ConfigSchema(sharedKeys + Settings.keys
      + Pipeline.nested(sftSchema, under: "sft.", shared: shared) + Pipeline.nested(rmSchema, under: "proxy.", shared: shared)
      + Pipeline.nested(ppoSchema, under: "rl.", shared: shared) + Pipeline.nested(sftSchema, under: "genrm.", shared: shared))

    public struct Result: Sendable {
        public var method: String
        public var goldPeak: Double, goldFinal: Double, proxyFinal: Double, klFinal: Double
        public var seconds: Double
        public var runFolder: String
        public var json: [String: Any] {
            ["method": method, "gold_peak": goldPeak, "gold_final": goldFinal, "proxy_final": proxyFinal, "kl_final": klFinal, "seconds": seconds]
        }
    }

    /// The gold reward: 1 for the exact answer, −1 for anything but a bare integer.
    static func gold(_ response: String, answer: String) -> Double {
        ExactAnswerVerifier().score(response: response, answer: answer) + IntegerFormatVerifier().score(response: response, answer: nil)
    }

    public static func run(_ config: ResolvedConfig, transport: any Transport, workingDirectory: String = FileManager.default.currentDirectoryPath,
                           say: @escaping (String) -> Void = { print($0); fflush(nil) }, onStage: (String, FailureContext) -> Void = { _, _ in }) async throws -> Result {
        let started = Date()
        let study = Settings(config), data = DataSettings(config), run = try RunSettings(config)
        guard data.task == .arith else { throw ConfigError("the over-optimisation study runs on the arith task: set data.task: arith") }
        let method = study.method
        let proxies = method == .laser ? study.proxies : 1
        let rl = config.scoped(to: ppoSchema, prefix: "rl.", shared: shared)
        let folder = try await RunFolder.chooseCollectively(name: run.name, out: run.out, resume: .never,
                                                            workingDirectory: workingDirectory, transport: transport).folder.path
        if transport.rank == 0 { try RunFolder(path: folder).writeConfig(config.yaml) }
        let sayRankZero: (String) -> Void = { if transport.rank == 0 { say($0) } }
        sayRankZero("overopt (\(method.rawValue)): run folder \(folder)")

        // 1. The SFT model.
        var sftModel = study.sftFrom
        if sftModel.isEmpty {
            sayRankZero("== sft")
            let sft = SFTStage(config: try SFTConfig(config.scoped(to: sftSchema, prefix: "sft.", shared: shared)
                                   .with(RunSettings.out, ConfigPath(folder + "/sft")).with(RunSettings.resume, "never")),
                               transport: transport, workingDirectory: workingDirectory, say: say)
            guard let checkpoint = try await runStage(sft, as: "sft", onStage: onStage).lastCheckpoint else { throw TrainingError("sft left no checkpoint in \(folder)/sft") }
            sftModel = checkpoint
        }

        // 2. Gold-labelled pairs of the SFT policy's responses (rank 0 writes them; all read).
        let pairFiles = (0..<proxies).map { "\(folder)/gold_pairs_\($0 + 1).jsonl" }
        if transport.rank == 0 {
            try writeGoldPairs(study, task: data.arithTask, seed: run.seed, maxNewTokens: rl[PPOSettings.maxNewTokens], sftModel: sftModel, files: pairFiles, say: say)
        }
        try await transport.barrier()

        // 3. Proxy reward models from the SFT model, one per noisy sample (proxy.rm.train_trunk
        //    false: heads alone on the shared trunk).
        var heads: [String] = []
        for (k, file) in pairFiles.enumerated() {
            sayRankZero("== proxy \(k + 1)/\(proxies)")
            let rm = SFTStage(config: try SFTConfig(config.scoped(to: rmSchema, prefix: "proxy.", shared: shared)
                                  .with(RunSettings.out, ConfigPath("\(folder)/proxy\(k + 1)")).with(RunSettings.resume, "never")
                                  .with(RunSettings.initFrom, ConfigPath(sftModel)).with(DataSettings.task, DataTask.none)
                                  .with(DataSettings.prefs, ConfigPath(file)).with(RunSettings.seed, config[RunSettings.seed] + k)),
                              transport: transport, workingDirectory: workingDirectory, say: say)
            guard let checkpoint = try await runStage(rm, as: "proxy\(k + 1)", onStage: onStage).lastCheckpoint else { throw TrainingError("proxy \(k + 1) left no checkpoint") }
            heads.append(checkpoint)
        }

        // 4. Hybrid: the generative reward model (SFT on judgement data from the SFT model) and
        //    prompts whose tasks route them to the verifier, the GenRM with the answer, or best-of-N.
        var ppoConfig = try rl.with(RunSettings.out, ConfigPath(folder + "/ppo")).with(RunSettings.resume, "never")
            .with(RunSettings.initFrom, ConfigPath(sftModel)).with(RewardSettings.proxyHeads, heads.joined(separator: ","))
            .with(RewardSettings.selection, method.selection)
            .with(RewardSettings.proxy, 1).with(RewardSettings.verifier, 0).with(RewardSettings.format, 0).with(RewardSettings.rewardHead, 0)
        if method == .hybrid {
            let task = data.arithTask
            if transport.rank == 0 { try writeHybridData(task, study: study, seed: run.seed, folder: folder) }
            try await transport.barrier()
            sayRankZero("== genrm")
            let genrm = SFTStage(config: try SFTConfig(config.scoped(to: sftSchema, prefix: "genrm.", shared: shared)
                                     .with(RunSettings.out, ConfigPath(folder + "/genrm")).with(RunSettings.resume, "never")
                                     .with(RunSettings.initFrom, ConfigPath(sftModel)).with(DataSettings.task, DataTask.none)
                                     .with(DataSettings.train, ConfigPath(folder + "/judge.jsonl")).with(DataSettings.eval, ConfigPath(folder + "/eval_judge.jsonl"))),
                                 transport: transport, workingDirectory: workingDirectory, say: say)
            guard let judge = try await runStage(genrm, as: "genrm", onStage: onStage).lastCheckpoint else { throw TrainingError("genrm left no checkpoint") }
            ppoConfig = try ppoConfig.with(RewardSettings.hybrid, 1).with(RewardSettings.proxy, 0).with(RewardSettings.genrmModel, ConfigPath(judge))
                .with(RewardSettings.verifierTasks, "arith").with(RewardSettings.referenceTasks, "arith-ref").with(DataSettings.task, DataTask.none)
                .with(DataSettings.train, ConfigPath(folder + "/prompts.jsonl")).with(DataSettings.eval, ConfigPath(folder + "/eval.jsonl"))
        }

        // 5. PPO against the proxy (or the hybrid reward); the gold reward is logged, never optimised.
        sayRankZero("== ppo (\(method.rawValue))")
        let ppo = PPOStage(config: try PPOConfig(ppoConfig), transport: transport, workingDirectory: workingDirectory, say: say)
        _ = try await runStage(ppo, as: "ppo", onStage: onStage)

        // 6. Summary from metrics.jsonl: gold and proxy against KL.
        var result = Result(method: method.rawValue, goldPeak: 0, goldFinal: 0, proxyFinal: 0, klFinal: 0, seconds: 0, runFolder: folder)
        if transport.rank == 0 { try summarise(&result, metrics: "\(folder)/ppo/metrics.jsonl", trained: "reward_\(method.trainedSource)_mean", smooth: study.smooth) }
        result.seconds = Date().timeIntervalSince(started)
        return result
    }

    /// The hybrid study's data: judgements for the GenRM, prompts with tasks routed by
    /// study.verifier_share and study.reference_share, and the held-out set.
    static func writeHybridData(_ task: ArithTask, study: Settings, seed: UInt64, folder: String) throws {
        try JSONL.write(task.judgements(task.train, salt: 4), to: "\(folder)/judge.jsonl")
        try JSONL.write(task.judgements(task.eval, salt: 5), to: "\(folder)/eval_judge.jsonl")
        var rng = RNG(seed: seed &+ 0x4B)
        let v = study.verifierShare, r = study.referenceShare
        try JSONL.write(task.train.map { p in
            let u = rng.uniformDouble()
            return ["prompt": ArithTask.prompt(p), "answer": ArithTask.answer(p), "task": u < v ? "arith" : u < v + r ? "arith-ref" : "arith-open"]
        }, to: "\(folder)/prompts.jsonl")
        try JSONL.write(task.evalExamples().map { ["prompt": $0.prompt, "completion": $0.completion, "answer": $0.answer ?? ""] }, to: "\(folder)/eval.jsonl")
    }

    /// Gold and trained reward against KL from PPO's metrics.jsonl, each a trailing mean over `smooth` iterations.
    static func summarise(_ result: inout Result, metrics path: String, trained: String, smooth w: Int) throws {
        let lines = try JSONL.objects(path: path).map(\.object).filter { $0["gold_mean"] != nil }
        let gold = lines.compactMap { $0["gold_mean"] as? Double }, proxy = lines.compactMap { $0[trained] as? Double }
        let kl = lines.compactMap { $0["kl"] as? Double }
        func smoothed(_ v: [Double]) -> [Double] { v.indices.map { i in let s = v[max(0, i - w + 1)...i]; return s.reduce(0, +) / Double(s.count) } }
        result.goldPeak = smoothed(gold).max() ?? 0
        result.goldFinal = smoothed(gold).last ?? 0
        result.proxyFinal = smoothed(proxy).last ?? 0
        result.klFinal = smoothed(kl).last ?? 0
    }

    /// For each proxy: `study.pairs` prompts (its own seeded draw), two sampled SFT responses each,
    /// the pair ordered by the gold reward (ties redrawn up to 8 times, then skipped) and flipped
    /// with probability `study.noise`.
    static func writeGoldPairs(_ study: Settings, task: ArithTask, seed: UInt64, maxNewTokens maxNew: Int, sftModel: String, files: [String],
                               say: (String) -> Void) throws {
        let trunk = try HFCheckpoint.load(directory: sftModel)
        let tokenizer = try Tokenizers.load(sftModel)
        let noise = study.noise
        for (k, file) in files.enumerated() {
            var rng = RNG(seed: seed &+ 0x601D &+ UInt64(k) &* 7919)
            var lines: [[String: Any]] = [], flipped = 0, skipped = 0
            var attempt = 0
            while lines.count < study.pairs && attempt < 20 * study.pairs {
                attempt += 1
                let problem = task.train[Int(rng.next() % UInt64(task.train.count))]
                let prompt = ArithTask.prompt(problem), answer = ArithTask.answer(problem)
                let tokens = tokenizer.encodeWithPrefix(prompt)
                var pair: (String, String, Double, Double)?
                for _ in 0..<8 {
                    let out = try trunk.generate(prompts: [tokens, tokens], options: SamplingOptions(
                        temperature: study.temperature, maxNewTokens: maxNew, eosTokenId: tokenizer.eosTokenId, seed: rng.next())).tokens
                    let a = tokenizer.decode(out[0], skipSpecialTokens: true), b = tokenizer.decode(out[1], skipSpecialTokens: true)
                    let ga = gold(a, answer: answer), gb = gold(b, answer: answer)
                    if ga != gb { pair = (a, b, ga, gb); break }
                }
                guard let (a, b, ga, gb) = pair else { skipped += 1; continue }
                var (chosen, rejected) = ga > gb ? (a, b) : (b, a)
                if Double(rng.uniform()) < noise { swap(&chosen, &rejected); flipped += 1 }
                lines.append(["prompt": prompt, "chosen": chosen, "rejected": rejected, "task": "arith"])
            }
            try JSONL.write(lines, to: file)
            say("gold pairs for proxy \(k + 1): \(lines.count) pairs of SFT samples, \(flipped) labels flipped, \(skipped) prompts skipped (all samples tied) → \(file)")
        }
    }
}
