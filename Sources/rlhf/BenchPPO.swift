import Alignment
import ArgumentParser
import Foundation
import Kernels
import Models
import Roles

struct BenchPPO: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ppo",
        abstract: "One PPO iteration's phase split and peak RSS, hydra against separate layout.",
        discussion: """
        Per case: generate (policy, KV cache), score (reference + reward, old log-probs, values), train \
        (policy PPO step + critic value step per minibatch). Hydra: one frozen trunk with policy and critic LoRA; \
        separate: four full models, policy and critic fully fine-tuned. Each case runs in a child process so \
        peak_rss_mib is its own; iter_s is the best of --iterations after a warm-up.
        """)

    @Option(help: "Presets (repeatable).")
    var preset: [String] = ["tiny", "small", "gpt2"]
    @Option(help: "Layouts (repeatable): hydra, separate.")
    var layout: [String] = ["hydra", "separate"]
    @Option(help: "Prompts per iteration.")
    var prompts: Int = 32
    @Option(help: "Prompt tokens.")
    var promptTokens: Int = 16
    @Option(help: "Response tokens (no EOS, so every response has this length).")
    var responseTokens: Int = 32
    @Option(help: "Sequences per minibatch.")
    var minibatch: Int = 8
    @Option(help: "LoRA rank (hydra).")
    var rank: Int = 16
    @Option(help: "Timed iterations after one warm-up.")
    var iterations: Int = 2

    func run() async throws {
        if preset.count * layout.count > 1 {
            for p in preset { for l in layout { try child(p, l) } }
            return
        }
        try await measure(preset[0], layout[0])
    }

    func child(_ p: String, _ l: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        process.arguments = ["bench", "ppo", "--preset", p, "--layout", l, "--prompts", "\(prompts)", "--prompt-tokens", "\(promptTokens)",
                             "--response-tokens", "\(responseTokens)", "--minibatch", "\(minibatch)", "--rank", "\(rank)", "--iterations", "\(iterations)"]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw CLIError("bench ppo --preset \(p) --layout \(l) failed") }
    }

    func measure(_ presetName: String, _ layoutName: String) async throws {
        guard ["hydra", "separate"].contains(layoutName) else { throw CLIError("--layout must be hydra or separate") }
        let config = try GPT2Config.preset(presetName)
        log("bench ppo \(presetName) \(layoutName): \(BLAS.summary)")
        var rng = RNG(seed: 1)
        let base = try GPT2Trunk(config: config)
        base.initialize(rng: &rng)
        let rewardHead = ScalarHead(channels: config.channels)
        rewardHead.initialize(rng: &rng)
        let valueHead = ScalarHead(channels: config.channels)
        valueHead.parameters.copy(from: rewardHead.parameters)
        let hydra = layoutName == "hydra"
        func copy() throws -> GPT2Trunk { try GPT2Trunk(config: config, weights: base.weights.clone()) }
        let lora = LoRAConfig(rank: rank, alpha: Float(2 * rank), targets: LoRATarget.allCases)
        let policyLoRA = hydra ? try LoRAAdapter(config: lora, modelConfig: config) : nil
        let criticLoRA = hydra ? try LoRAAdapter(config: lora, modelConfig: config) : nil
        policyLoRA?.initialize(rng: &rng); criticLoRA?.initialize(rng: &rng)
        let hyper = AdamWHyperparameters(learningRate: 1e-4, weightDecay: 0)
        let policy = LocalPolicy(trunk: hydra ? base : try copy(), adapter: policyLoRA, hyper: hyper)
        let critic = LocalCritic(trunk: hydra ? base : try copy(), adapter: criticLoRA, head: valueHead, hyper: hyper, trainTrunk: !hydra)
        let scorer = HydraScorer(trunk: base, rewardHead: rewardHead)
        let reward = hydra ? nil : LocalReward(trunk: try copy(), head: rewardHead)
        let prompts = (0..<self.prompts).map { _ in (0..<promptTokens).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) } }
        let options = SamplingOptions(temperature: 1, maxNewTokens: responseTokens, eosTokenId: nil, seed: 3)

        var best: (iter: Double, generate: Double, score: Double, train: Double) = (.infinity, 0, 0, 0)
        for _ in 0...max(iterations, 1) {
            let t0 = Date()
            let rollout = try await policy.generate(prompts: prompts, options: options)
            let sequences = zip(prompts, rollout.tokens).map { $0 + $1 }
            let t1 = Date()
            let refAll: [[Float]], scores: [Float]
            if hydra { (refAll, scores) = try await scorer.referenceAndScores(sequences) }
            else { refAll = try await scorer.logProbs(sequences); scores = try await reward!.scores(sequences) }
            let oldAll = try await policy.logProbs(sequences), valuesAll = try await critic.values(sequences)
            let p = promptTokens
            let old = oldAll.map { Array($0[(p - 1)...]) }, ref = refAll.map { Array($0[(p - 1)...]) }
            let values = valuesAll.map { Array($0[(p - 1)..<($0.count - 1)]) }
            var advantages: [[Double]] = [], returns: [[Double]] = []
            for i in sequences.indices {
                let kl = PPOMath.kl(old[i].map(Double.init), ref[i].map(Double.init), estimator: .k1)
                let (a, g) = PPOMath.gae(rewards: PPOMath.shapedRewards(kl: kl, beta: 0.05, score: Double(scores[i])),
                                         values: values[i].map(Double.init), gamma: 1, lambda: 0.95)
                advantages.append(a); returns.append(g)
            }
            advantages = PPOMath.whiten(advantages, unbiased: true)
            let t2 = Date()
            for start in stride(from: 0, to: sequences.count, by: minibatch) {
                let part = Array(start..<min(start + minibatch, sequences.count))
                let lengths = part.map { _ in p }
                _ = try await policy.trainStep(part.map { sequences[$0] }, objective: .ppo(PPOTargets(
                    promptLengths: lengths, oldLogProbs: part.map { old[$0] }, advantages: part.map { advantages[$0].map(Float.init) })),
                    learningRate: 1e-4, maxGradNorm: 1)
                _ = try await critic.trainStep(part.map { sequences[$0] }, objective: .clippedValue(
                    promptLengths: lengths, oldValues: part.map { values[$0] }, returns: part.map { returns[$0].map(Float.init) }, clip: 0.2),
                    learningRate: 1e-4, maxGradNorm: 1)
            }
            let t3 = Date()
            let iter = t3.timeIntervalSince(t0)
            if iter < best.iter { best = (iter, t1.timeIntervalSince(t0), t2.timeIntervalSince(t1), t3.timeIntervalSince(t2)) }
        }
        let trainable = hydra ? policyLoRA!.weights.count + criticLoRA!.weights.count + valueHead.parameters.count
                              : 2 * base.layout.parameterCount + valueHead.parameters.count
        printJSONLine(["case": "ppo", "layout": layoutName, "preset": presetName, "threads": BLAS.threads, "core": BLAS.coreName,
                       "prompts": self.prompts, "response_tokens": responseTokens, "minibatch": minibatch, "epochs": 1,
                       "iter_s": rounded(best.iter, 4), "generate_s": rounded(best.generate, 4), "score_s": rounded(best.score, 4),
                       "train_s": rounded(best.train, 4), "trainable_parameters": trainable,
                       "full_models_in_memory": hydra ? 1 : 4, "peak_rss_mib": rounded(Measure.peakRSSMiB(), 1)])
    }
}
