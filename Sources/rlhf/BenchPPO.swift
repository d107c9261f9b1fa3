import Alignment
import ArgumentParser
import Config
import Foundation
import Kernels
import Models
import Roles
import Tokenizers
import Training

struct BenchPPO: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ppo",
        abstract: "One PPO iteration's phase split and peak RSS, hydra against separate layout.",
        discussion: """
            Per case: generate (policy, KV cache), score (reference + reward, old log-probs, values), train \
            (policy PPO step + critic value step per minibatch). Hydra: one frozen trunk with policy and critic LoRA; \
            separate: four full models, policy and critic fully fine-tuned. Each case runs in a child process so \
            peak_rss_mib is its own; iter_s is the best of --iterations after a warm-up. plan_mib is the run's memory \
            plan (printed at the start of every PPO run), runtime_rss_mib the process before any model.
            """)

    @Option(
        help: "Presets, family/preset (a bare name is GPT-2's): tiny, small, gpt2, llama/smollm2-135m, … (repeatable).")
    var preset: [String] = ["tiny", "small", "gpt2"]
    @Option(help: "Layouts (repeatable): hydra, separate.")
    var layout: [String] = ["hydra", "separate"]
    @Option(help: "Prompts per iteration.")
    var prompts: Int = 32
    @Option(help: "Responses sampled per prompt.")
    var samples: Int = 1
    @Option(help: "Prompt tokens.")
    var promptTokens: Int = 16
    @Option(help: "Response tokens (no EOS, so every response has this length).")
    var responseTokens: Int = 32
    @Option(help: "Sequences per minibatch.")
    var minibatch: Int = 8
    @Option(help: "LoRA rank (hydra).")
    var rank: Int = 16
    @Option(help: "Timed iterations after one warm-up (0: time the warm-up itself).")
    var iterations: Int = 2
    @Option(help: "Precision of the weight products: fp32, bf16 or auto (the `precision` key).")
    var precision: PrecisionSetting = .fp32
    @Option(
        help: ArgumentHelp(
            "Advantage estimator (ppo.estimator): gae (PPO with a critic), grpo, rloo, … With grpo and the "
                + "settings of ../shared/peer/bench_grpo.py (--prompts 8 --samples 8 --response-tokens 64 "
                + "--minibatch 8 --rank 16), one iteration is the work of one TRL GRPOTrainer step with "
                + "--min-new-tokens 64."))
    var estimator: AdvantageEstimator = .gae
    @Option(help: "KL coefficient β (ppo.kl_coef; TRL's GRPO default is 0.04).")
    var klCoef: Double = 0.05
    @Option(help: "Old log-probs (ppo.old_logprobs): sampling (kept from generation) or recompute (a policy pass).")
    var oldLogprobs: OldLogProbs = .sampling

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
        process.arguments = [
            "bench", "ppo", "--preset", p, "--layout", l, "--prompts", "\(prompts)", "--samples", "\(samples)",
            "--prompt-tokens", "\(promptTokens)",
            "--response-tokens", "\(responseTokens)", "--minibatch", "\(minibatch)", "--rank", "\(rank)",
            "--iterations", "\(iterations)", "--precision", precision.rawValue, "--estimator", estimator.rawValue,
            "--kl-coef", "\(klCoef)", "--old-logprobs", oldLogprobs.rawValue,
        ]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw CLIError("bench ppo --preset \(p) --layout \(l) failed") }
    }

    func measure(_ presetName: String, _ layoutName: String) async throws {
        guard ["hydra", "separate"].contains(layoutName) else { throw CLIError("--layout must be hydra or separate") }
        let config = try ModelFamilies.preset(qualified: presetName)
        // The process before any model (runtime, libraries, OpenBLAS's buffers): what the memory
        // plan, which counts what the run allocates, leaves out.
        let runtime = Measure.peakRSSMiB()
        log("bench ppo \(presetName) \(layoutName): \(BLAS.summary)")
        let (ppoConfig, inputs) = try PPOBenchCase(
            preset: presetName, layout: layoutName, prompts: self.prompts, samples: samples,
            promptTokens: promptTokens, responseTokens: responseTokens, minibatch: minibatch, loraRank: rank,
            precision: precision, estimator: estimator, klCoef: klCoef, oldLogprobs: oldLogprobs
        ).make()
        log(ppoConfig.run.precisionLine)
        let best = try await PPOTiming.best(config: ppoConfig, inputs: inputs, iterations: max(iterations, 0))
        let hydra = layoutName == "hydra"
        let plan = try MemoryPlan(ppoConfig, model: config, ranksRollingOut: 1), peak = Measure.peakRSSMiB()
        let planned = runtime + plan.totalBytes / 1_048_576
        log(plan.description)
        printJSONLine([
            "case": "ppo", "layout": layoutName, "preset": presetName, "threads": BLAS.threads, "core": BLAS.coreName,
            "prompts": self.prompts, "response_tokens": responseTokens, "minibatch": minibatch, "epochs": 1,
            "precision": ppoConfig.run.precision.precision.rawValue, "estimator": estimator.rawValue,
            "old_logprobs": oldLogprobs.rawValue,
            "cpu": CPUFeatures.current.modelName,
            "completion_tokens_per_s": rounded(Double(self.prompts * samples * responseTokens) / best.iteration, 2),
            "iter_s": rounded(best.iteration, 4), "generate_s": rounded(best.generate, 4),
            "score_s": rounded(best.score, 4),
            "train_s": rounded(best.train, 4), "trainable_parameters": best.trainableParameters,
            "full_models_in_memory": hydra ? 1 : 4, "peak_rss_mib": rounded(peak, 1), "samples": samples,
            "runtime_rss_mib": rounded(runtime, 1), "plan_mib": rounded(plan.totalBytes / 1_048_576, 1),
            "peak_over_runtime_plus_plan": rounded(peak / planned, 3),
        ])
    }
}

/// The settings and inputs of one benchmarked PPO iteration: random weights of a preset, random
/// prompts, the reward head as the reward, responses of full length (no EOS).
struct PPOBenchCase {
    let preset: String, layout: String, prompts: Int, samples: Int, promptTokens: Int, responseTokens: Int
    let minibatch: Int, loraRank: Int, precision: PrecisionSetting, estimator: AdvantageEstimator, klCoef: Double
    let oldLogprobs: OldLogProbs

    func make() throws -> (PPOConfig, PPOInputs) {
        let config = try ModelFamilies.preset(qualified: preset)
        var rng = RNG(seed: 1)
        let base = try config.makeModel(weights: nil)
        base.initialize(rng: &rng)
        let rewardHead = ScalarHead(channels: config.channels)
        rewardHead.initialize(rng: &rng)
        let prompts = (0..<self.prompts).map { _ in
            (0..<promptTokens).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) }
        }
        // The stage's own iteration (rollout → score → advantages → update → report).
        let ppoConfig = try PPOConfig(
            try ppoSchema.resolve(
                file: nil,
                overrides: [
                    "model.init_from=/bench", "data.task=arith", "layout=\(layout)", "ppo.iterations=1000000",
                    "ppo.prompts=\(self.prompts)",
                    "ppo.samples_per_prompt=\(samples)", "ppo.max_new_tokens=\(responseTokens)",
                    "ppo.minibatch_size=\(minibatch)", "ppo.lr=1e-4", "ppo.critic_lr=1e-4",
                    "ppo.missing_eos_penalty=0", "rewards.reward_head=1", "rewards.verifier=0", "rewards.format=0",
                    "lora.rank=\(loraRank)", "lora.alpha=\(2 * loraRank)",
                    "train.max_length=\(promptTokens + responseTokens)", "eval.every=0",
                    "precision=\(precision.rawValue)", "ppo.estimator=\(estimator.rawValue)", "ppo.kl_coef=\(klCoef)",
                    "ppo.old_logprobs=\(oldLogprobs.rawValue)",
                ]))
        let inputs = PPOInputs(
            base: base, rewardHead: rewardHead, tokenizer: WithoutEOS(vocabSize: config.vocabSize), prompts: prompts)
        return (ppoConfig, inputs)
    }
}

/// Token ids as they are, no end-of-sequence token: every sampled response has full length.
struct WithoutEOS: Tokenizer {
    let vocabSize: Int
    var bosTokenId: Int32? { nil }
    var eosTokenId: Int32? { nil }
    func encode(_ text: String) -> [Int32] { [] }
    func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String { "" }
    var summary: String { "token ids (\(vocabSize), no EOS)" }
}

extension PrecisionSetting: ExpressibleByArgument {}
extension AdvantageEstimator: ExpressibleByArgument {}
extension OldLogProbs: ExpressibleByArgument {}
