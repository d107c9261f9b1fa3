import Alignment
import Cluster
import Foundation
import Kernels
import Models
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

    public static let schema = ConfigSchema(sharedKeys + [
        ConfigKey("study.method", .choice(["proxy", "r2m", "laser", "hybrid"]), .string("proxy"),
                  "proxy: PPO on one proxy; r2m: that proxy fused with the policy's states and updated online; laser: LinUCB over study.proxies proxies; hybrid: verifier / GenRM routing"),
        ConfigKey("study.verifier_share", .float, .float(0.4), "hybrid: share of prompts whose task has a verifier"),
        ConfigKey("study.reference_share", .float, .float(0.3), "hybrid: share judged by the GenRM against the answer; the rest against the proxy's best of N"),
        ConfigKey("study.sft_from", .path, .string(""), "start from this SFT checkpoint instead of training one"),
        ConfigKey("study.proxies", .int, .int(3), "proxy heads trained (each on its own noisy sample); proxy and r2m use the first"),
        ConfigKey("study.pairs", .int, .int(300), "gold-labelled pairs per proxy"),
        ConfigKey("study.noise", .float, .float(0.2), "share of the proxies' pair labels flipped"),
        ConfigKey("study.temperature", .float, .float(1), "sampling temperature of the SFT responses the pairs compare"),
        ConfigKey("study.smooth", .int, .int(5), "iterations averaged for gold_peak and gold_final"),
    ] + sftSchema.keys.filter { !shared.contains($0.path) }.map { ConfigKey("sft." + $0.path, $0.type, $0.defaultValue, $0.help) }
      + rmSchema.keys.filter { !shared.contains($0.path) }.map { ConfigKey("proxy." + $0.path, $0.type, $0.defaultValue, $0.help) }
      + ppoSchema.keys.filter { !shared.contains($0.path) }.map { ConfigKey("rl." + $0.path, $0.type, $0.defaultValue, $0.help) }
      + sftSchema.keys.filter { !shared.contains($0.path) }.map { ConfigKey("genrm." + $0.path, $0.type, $0.defaultValue, $0.help) })

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
        guard config.string("data.task") == "arith" else { throw ConfigError("the over-optimisation study runs on the arith task: set data.task: arith") }
        let method = config.string("study.method")
        let proxies = method == "laser" ? config.int("study.proxies") : 1
        guard proxies >= 1 else { throw ConfigError("'study.proxies' must be at least 1") }
        let folder = try await RunFolder.chooseCollectively(name: config.string("name"), out: config.string("out"), resume: "never",
                                                            workingDirectory: workingDirectory, transport: transport).folder.path
        if transport.rank == 0 { try RunFolder(path: folder).writeConfig(config.yaml) }
        let sayRankZero: (String) -> Void = { if transport.rank == 0 { say($0) } }
        sayRankZero("overopt (\(method)): run folder \(folder)")

        // 1. The SFT model.
        var sftModel = config.string("study.sft_from")
        if sftModel.isEmpty {
            sayRankZero("== sft")
            let sft = SFTStage(config: try SFTConfig(try Pipeline.stage(config, schema: sftSchema, prefix: "sft.", overrides: ["out=\(folder)/sft", "resume=never"], shared: shared)),
                               transport: transport, workingDirectory: workingDirectory, say: say)
            onStage("sft", sft.context)
            guard let checkpoint = try await sft.run().lastCheckpoint else { throw TrainingError("sft left no checkpoint in \(folder)/sft") }
            sftModel = checkpoint
        }

        // 2. Gold-labelled pairs of the SFT policy's responses (rank 0 writes them; all read).
        let pairFiles = (0..<proxies).map { "\(folder)/gold_pairs_\($0 + 1).jsonl" }
        if transport.rank == 0 { try writeGoldPairs(config, sftModel: sftModel, files: pairFiles, say: say) }
        try await transport.barrier()

        // 3. Proxy reward models from the SFT model, one per noisy sample (proxy.rm.train_trunk
        //    false: heads alone on the shared trunk).
        var heads: [String] = []
        for (k, file) in pairFiles.enumerated() {
            sayRankZero("== proxy \(k + 1)/\(proxies)")
            let rm = SFTStage(config: try SFTConfig(try Pipeline.stage(config, schema: rmSchema, prefix: "proxy.", overrides: [
                "out=\(folder)/proxy\(k + 1)", "resume=never", "model.init_from=\(sftModel)", "data.task=", "data.prefs=\(file)",
                "seed=\(config.int("seed") + k)"], shared: shared)), transport: transport, workingDirectory: workingDirectory, say: say)
            onStage("proxy\(k + 1)", rm.context)
            guard let checkpoint = try await rm.run().lastCheckpoint else { throw TrainingError("proxy \(k + 1) left no checkpoint") }
            heads.append(checkpoint)
        }

        // 4. Hybrid: the generative reward model (SFT on judgement data from the SFT model) and
        //    prompts whose tasks route them to the verifier, the GenRM with the answer, or best-of-N.
        var hybridOverrides: [String] = []
        if method == "hybrid" {
            let task = ArithTask(config)
            if transport.rank == 0 {
                try JSONL.write(task.judgements(task.train, salt: 4), to: "\(folder)/judge.jsonl")
                try JSONL.write(task.judgements(task.eval, salt: 5), to: "\(folder)/eval_judge.jsonl")
                var rng = RNG(seed: UInt64(truncatingIfNeeded: config.int("seed")) &+ 0x4B)
                let v = config.double("study.verifier_share"), r = config.double("study.reference_share")
                try JSONL.write(task.train.map { p in
                    let u = rng.uniformDouble()
                    return ["prompt": ArithTask.prompt(p), "answer": ArithTask.answer(p), "task": u < v ? "arith" : u < v + r ? "arith-ref" : "arith-open"]
                }, to: "\(folder)/prompts.jsonl")
                try JSONL.write(task.evalExamples().map { ["prompt": $0.prompt, "completion": $0.completion, "answer": $0.answer!] }, to: "\(folder)/eval.jsonl")
            }
            try await transport.barrier()
            sayRankZero("== genrm")
            let genrm = SFTStage(config: try SFTConfig(try Pipeline.stage(config, schema: sftSchema, prefix: "genrm.", overrides: [
                "out=\(folder)/genrm", "resume=never", "model.init_from=\(sftModel)", "data.task=", "data.train=\(folder)/judge.jsonl",
                "data.eval=\(folder)/eval_judge.jsonl"], shared: shared)), transport: transport, workingDirectory: workingDirectory, say: say)
            onStage("genrm", genrm.context)
            guard let judge = try await genrm.run().lastCheckpoint else { throw TrainingError("genrm left no checkpoint") }
            hybridOverrides = ["rewards.hybrid=1", "rewards.proxy=0", "rewards.genrm_model=\(judge)", "rewards.verifier_tasks=arith",
                               "rewards.reference_tasks=arith-ref", "data.task=", "data.train=\(folder)/prompts.jsonl", "data.eval=\(folder)/eval.jsonl"]
        }

        // 5. PPO against the proxy (or the hybrid reward); the gold reward is logged, never optimised.
        sayRankZero("== ppo (\(method))")
        let selection = ["proxy": "mean", "r2m": "r2m", "laser": "laser", "hybrid": "mean"][method]!
        let ppoConfig = try PPOConfig(try Pipeline.stage(config, schema: ppoSchema, prefix: "rl.", overrides: [
            "out=\(folder)/ppo", "resume=never", "model.init_from=\(sftModel)", "rewards.proxy_heads=\(heads.joined(separator: ","))",
            "rewards.selection=\(selection)", "rewards.proxy=1", "rewards.verifier=0", "rewards.format=0", "rewards.reward_head=0",
            "data.r2m_pairs=\(pairFiles[0])"] + hybridOverrides, shared: shared))
        let ppo = PPOStage(config: ppoConfig, transport: transport, workingDirectory: workingDirectory, say: say)
        onStage("ppo", ppo.context)
        _ = try await ppo.run()

        // 6. Summary from metrics.jsonl: gold and proxy against KL.
        var result = Result(method: method, goldPeak: 0, goldFinal: 0, proxyFinal: 0, klFinal: 0, seconds: 0, runFolder: folder)
        if transport.rank == 0 {
            let lines = try JSONL.objects(path: "\(folder)/ppo/metrics.jsonl").map(\.object).filter { $0["gold_mean"] != nil }
            let trained = method == "hybrid" ? "hybrid_mean" : "proxy_mean"
            let gold = lines.compactMap { $0["gold_mean"] as? Double }, proxy = lines.compactMap { $0[trained] as? Double }
            let kl = lines.compactMap { $0["kl"] as? Double }
            let w = max(config.int("study.smooth"), 1)
            func smoothed(_ v: [Double]) -> [Double] { v.indices.map { i in let s = v[max(0, i - w + 1)...i]; return s.reduce(0, +) / Double(s.count) } }
            result.goldPeak = smoothed(gold).max() ?? 0
            result.goldFinal = smoothed(gold).last ?? 0
            result.proxyFinal = smoothed(proxy).last ?? 0
            result.klFinal = smoothed(kl).last ?? 0
        }
        result.seconds = Date().timeIntervalSince(started)
        return result
    }

    /// For each proxy: `study.pairs` prompts (its own seeded draw), two sampled SFT responses each,
    /// the pair ordered by the gold reward (ties redrawn up to 8 times, then skipped) and flipped
    /// with probability `study.noise`.
    static func writeGoldPairs(_ config: ResolvedConfig, sftModel: String, files: [String], say: (String) -> Void) throws {
        let task = ArithTask(config)
        let trunk = try HFCheckpoint.load(directory: sftModel)
        let tokenizer = try Tokenizers.load(sftModel)
        let maxNew = config.int("rl.ppo.max_new_tokens"), noise = config.double("study.noise")
        for (k, file) in files.enumerated() {
            var rng = RNG(seed: UInt64(truncatingIfNeeded: config.int("seed")) &+ 0x601D &+ UInt64(k) &* 7919)
            var lines: [[String: Any]] = [], flipped = 0, skipped = 0
            var attempt = 0
            while lines.count < config.int("study.pairs") && attempt < 20 * config.int("study.pairs") {
                attempt += 1
                let problem = task.train[Int(rng.next() % UInt64(task.train.count))]
                let prompt = ArithTask.prompt(problem), answer = ArithTask.answer(problem)
                let tokens = (tokenizer.bosTokenId.map { [$0] } ?? []) + tokenizer.encode(prompt)
                var pair: (String, String, Double, Double)?
                for _ in 0..<8 {
                    let out = try trunk.generate(prompts: [tokens, tokens], options: SamplingOptions(
                        temperature: config.float("study.temperature"), maxNewTokens: maxNew, eosTokenId: tokenizer.eosTokenId, seed: rng.next())).tokens
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
