import Alignment
import Foundation
import Models

/// PPO's keys (algorithms.md §2.4 defaults where TRL and OpenRLHF agree; our choices noted).
public let ppoSchema = ConfigSchema(CommonKeys.run + CommonKeys.data + [
    ConfigKey("layout", .choice(["hydra", "separate"]), .string("hydra"), "hydra: one frozen trunk, LoRA roles; separate: four full models"),
    ConfigKey("ppo.iterations", .int, .int(100), "rollout + update iterations"),
    ConfigKey("ppo.prompts", .int, .int(16), "prompts per iteration (global)"),
    ConfigKey("ppo.samples_per_prompt", .int, .int(4), "responses sampled per prompt"),
    ConfigKey("ppo.max_new_tokens", .int, .int(8), "response length limit"),
    ConfigKey("ppo.temperature", .float, .float(1), "sampling temperature (log-probs are taken on logits/τ)"),
    ConfigKey("ppo.top_k", .int, .int(0), "sampling top-k (0: off)"),
    ConfigKey("ppo.top_p", .float, .float(1), "sampling top-p (1: off)"),
    ConfigKey("ppo.estimator", .choice(AdvantageEstimator.allCases.map(\.rawValue)), .string("gae"), "advantage estimator"),
    ConfigKey("ppo.kl_estimator", .choice(["k1", "k2", "k3"]), .string("k1"), "per-token KL estimator"),
    ConfigKey("ppo.kl_coef", .float, .float(0.05), "β of the KL penalty (initial value when adaptive)"),
    ConfigKey("ppo.kl_target", .float, .float(0), "adaptive KL target per sequence (0: fixed β)"),
    ConfigKey("ppo.kl_horizon", .float, .float(10000), "adaptive KL horizon"),
    ConfigKey("ppo.gamma", .float, .float(1), "discount γ"),
    ConfigKey("ppo.lambda", .float, .float(0.95), "GAE λ"),
    ConfigKey("ppo.clip", .float, .float(0.2), "policy ratio clip ε"),
    ConfigKey("ppo.dual_clip", .float, .float(0), "dual-clip c > 1 for negative advantages (0: off)"),
    ConfigKey("ppo.value_clip", .float, .float(0.2), "value clip"),
    ConfigKey("ppo.entropy_coef", .float, .float(0), "entropy bonus coefficient"),
    ConfigKey("ppo.reward_clip", .float, .float(10), "clip the sequence reward to ±this"),
    ConfigKey("ppo.missing_eos_penalty", .float, .float(1), "subtracted from the reward when a response has no EOS"),
    ConfigKey("ppo.whiten_advantages", .bool, .bool(true), "whiten advantages over the batch (gae, reinforce)"),
    ConfigKey("ppo.epochs", .int, .int(1), "passes over each rollout"),
    ConfigKey("ppo.minibatch_size", .int, .int(16), "sequences per optimizer step (per rank)"),
    ConfigKey("ppo.lr", .float, .float(1e-3), "policy learning rate (LoRA, or the full model when separate)"),
    ConfigKey("ppo.critic_lr", .float, .float(1e-3), "critic learning rate"),
    ConfigKey("ppo.grad_clip", .float, .float(1), "gradient norm clip"),
    ConfigKey("ppo.min_lr_ratio", .float, .float(0.1), "learning rates decay by a cosine to this share at the last iteration"),
    ConfigKey("ppo.ptx_coef", .float, .float(0), "PPO-ptx: weight of the SFT loss on demonstrations, one extra step per minibatch"),
    ConfigKey("lora.rank", .int, .int(16), "LoRA rank of the policy and critic adapters (hydra)"),
    ConfigKey("lora.alpha", .float, .float(32), "LoRA α"),
    ConfigKey("lora.targets", .string, .string("attn.c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj"), "wrapped projections"),
    ConfigKey("rewards.reward_head", .float, .float(0), "weight of the reward head's score"),
    ConfigKey("rewards.verifier", .float, .float(1), "weight of the exact-answer verifier (tasks with answers)"),
    ConfigKey("rewards.format", .float, .float(0.5), "weight of the bare-integer format check (0 or −1)"),
    ConfigKey("rewards.proxy", .float, .float(0), "weight of the learned proxy reward read from rewards.proxy_heads"),
    ConfigKey("rewards.proxy_heads", .string, .string(""), "comma-separated reward heads on model.init_from's frozen trunk: rm checkpoint folders (rm.train_trunk=false) or .safetensors files"),
    ConfigKey("rewards.selection", .choice(["mean", "laser", "r2m"]), .string("mean"),
              "how the proxy heads make the reward: their mean; laser (LinUCB picks one per batch); r2m (head 1 fused with the policy's states, updated online)"),
    ConfigKey("laser.alpha", .float, .float(0.1), "LinUCB exploration α"),
    ConfigKey("laser.arms", .string, .string(""), "LASeR's arms: named reward sources (reward_head, verifier, format, hybrid, proxy1…); default the proxy heads"),
    ConfigKey("laser.reward", .choice(["loss", "heldout"]), .string("loss"),
              "bandit reward: −(policy loss of the iteration), or the held-out gain: the heads' mean score of greedy responses to laser.heldout_prompts eval prompts, after minus before the update"),
    ConfigKey("laser.heldout_prompts", .int, .int(32), "held-out prompts for laser.reward heldout"),
    ConfigKey("r2m.w_max", .float, .float(1), "largest weight w of the policy-feedback term"),
    ConfigKey("r2m.ramp", .float, .float(0.1), "share of the iterations over which w(t) rises linearly to r2m.w_max"),
    ConfigKey("r2m.every", .int, .int(1), "online update every K iterations"),
    ConfigKey("r2m.replay", .int, .int(32), "replayed preference pairs per online update"),
    ConfigKey("r2m.lr", .float, .float(1e-3), "learning rate of the fusion and head"),
    ConfigKey("r2m.anchor", .float, .float(0.1), "λ of the anchor loss λ·mean((R2M − R0)²) on the batch's rollouts"),
    ConfigKey("r2m.heads", .int, .int(1), "attention heads of the fusion"),
    ConfigKey("rewards.hybrid", .float, .float(0), "weight of the hybrid reward: verifier, else GenRM with the answer, else GenRM against the reward model's best of N"),
    ConfigKey("rewards.genrm_model", .path, .string(""), "the generative reward model (an SFT checkpoint trained on judge.jsonl)"),
    ConfigKey("rewards.verifier_tasks", .string, .string("arith"), "hybrid routing: tasks with rule verifiers, task=v1+v2 (exact, format, expression, length<N>; a bare task: exact+format)"),
    ConfigKey("rewards.reference_tasks", .string, .string(""), "prompt tasks judged by the GenRM against their answer; other tasks against the best of N"),
    ConfigKey("rewards.bon_samples", .int, .int(8), "SFT samples per prompt for best-of-N references"),
    ConfigKey("prepo.keep", .float, .float(0), "Pre-PPO: keep this share of the prompts, the hardest by the SFT policy's mean reward z-scored per task (0: off)"),
    ConfigKey("prepo.samples", .int, .int(4), "Pre-PPO: responses sampled per candidate prompt"),
    ConfigKey("prepo.candidates", .int, .int(2000), "Pre-PPO: prompts scored (the first N of the seeded order; 0: all)"),
    ConfigKey("curriculum.tasks", .string, .string(""), "comma-separated prompt tasks drawn first (e.g. math,code; the 'task' field of prompts)"),
    ConfigKey("curriculum.share", .float, .float(0), "share of the iterations that draw only curriculum.tasks prompts"),
    ConfigKey("data.r2m_pairs", .path, .string(""), "preference pairs R2M replays (JSONL; arith: the task's pairs)"),
    ConfigKey("eval.every", .int, .int(10), "evaluate every N iterations (and at the end)"),
    ConfigKey("eval.max_examples", .int, .int(500), "held-out examples per evaluation"),
    ConfigKey("eval.max_new_tokens", .int, .int(8), "greedy decoding budget for exact match"),
    ConfigKey("train.max_length", .int, .int(64), "longest prompt + response"),
    ConfigKey("log.every", .int, .int(1), "print a line every N iterations when stdout is not a terminal"),
    ConfigKey("checkpoint.every", .int, .int(50), "save every N iterations (and at the end; 0: end only) for resume"),
    ConfigKey("checkpoint.keep_last", .int, .int(2), "checkpoints kept; older ones are deleted"),
    ConfigKey("memory.limit_gib", .float, .float(0), "refuse to start when the memory plan exceeds this (0: 90% of physical memory)"),
    ConfigKey("data.ptx", .path, .string(""), "SFT demonstrations JSONL for ppo.ptx_coef (arith: the task's demos)"),
])

public struct PPOConfig: Sendable {
    public var resolved: ResolvedConfig
    public let c: ResolvedConfig
    public init(_ resolved: ResolvedConfig) throws {
        self.resolved = resolved; c = resolved
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw ConfigError(message) } }
        try check(!initFrom.isEmpty, "'model.init_from' must name the (Hydra-)SFT checkpoint PPO starts from")
        try check(task == "arith" || !promptsFile.isEmpty, "set 'data.task' or 'data.train' (RL prompts JSONL)")
        try check(prompts > 0 && samples > 0 && iterations >= 0 && maxNewTokens > 0, "ppo.prompts, ppo.samples_per_prompt and ppo.max_new_tokens must be positive")
        try check(estimator != .grpo && estimator != .rloo && estimator != .drGRPO || samples > 1, "'\(estimator.rawValue)' compares samples of a prompt: set ppo.samples_per_prompt ≥ 2")
        _ = try loraTargets()
    }
    public var name: String { c.string("name") }
    public var out: String { c.string("out") }
    public var seed: UInt64 { UInt64(truncatingIfNeeded: c.int("seed")) }
    public var resume: String { c.string("resume") }
    public var initFrom: String { c.string("model.init_from") }
    public var task: String { c.string("data.task") }
    public var promptsFile: String { c.string("data.train") }
    public var evalFile: String { c.string("data.eval") }
    public var layout: String { c.string("layout") }
    public var iterations: Int { c.int("ppo.iterations") }
    public var prompts: Int { c.int("ppo.prompts") }
    public var samples: Int { c.int("ppo.samples_per_prompt") }
    public var maxNewTokens: Int { c.int("ppo.max_new_tokens") }
    public var estimator: AdvantageEstimator { AdvantageEstimator(rawValue: c.string("ppo.estimator"))! }
    public var klEstimator: KLEstimator { KLEstimator(rawValue: c.string("ppo.kl_estimator"))! }
    public var timeout: Double { c.double("cluster.timeout") }
    public var placement: String { c.string("placement") }

    public func loraTargets() throws -> [LoRATarget] { try parseLoRATargets(c.string("lora.targets")) }
}

/// 'lora.targets': comma-separated projection names.
func parseLoRATargets(_ list: String) throws -> [LoRATarget] {
    try list.split(separator: ",").map {
        guard let t = LoRATarget(rawValue: $0.trimmingCharacters(in: .whitespaces)) else {
            throw ConfigError("'lora.targets': '\($0)' is not one of \(LoRATarget.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return t
    }
}
