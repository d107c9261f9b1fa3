import Alignment
import Config

/// Where PPO's importance ratio is taken: per token (PPO), or per sequence (GSPO).
public enum RatioLevel: String, ConfigChoice { case token, sequence }

/// The GRPO recipes of 2025 (issue 29, point 3), each off by default: asymmetric clipping (DAPO's
/// clip-higher), the loss aggregation, GSPO's sequence-level ratio, DAPO's overlong filter and
/// soft overlong punishment, and dynamic sampling (docs/algorithms.md §2.5).
public struct RecipeSettings: Sendable {
    static let clipLow = Key<Double>(
        "ppo.clip_low", 0, "ε_low: the ratio's lower clip 1 − ε_low (0: ppo.clip)", .nonNegative)
    static let clipHigh = Key<Double>(
        "ppo.clip_high", 0, "ε_high: the ratio's upper clip 1 + ε_high, DAPO's clip-higher (0: ppo.clip)",
        .nonNegative)
    static let lossAggregation = Key<LossAggregation>(
        "ppo.loss_aggregation", .tokenMean,
        "how token terms make the loss: token_mean over the minibatch's tokens; seq_mean_token_mean (GRPO; TRL "
            + "'grpo'); seq_mean_token_sum; dr_grpo, the sum over sequences × ppo.max_new_tokens (Dr. GRPO)")
    static let ratio = Key<RatioLevel>(
        "ppo.ratio", .token,
        "importance ratio per token (PPO), or per sequence: exp of the mean token log-ratio (GSPO; TRL "
            + "importance_sampling_level)")
    static let overlongFilter = Key<Bool>(
        "ppo.overlong_filter", false, "leave responses cut at ppo.max_new_tokens out of the loss (DAPO)")
    static let overlongBuffer = Key<Int>(
        "ppo.overlong_buffer", 0,
        "DAPO's soft overlong punishment: over the last this many tokens before ppo.max_new_tokens the reward "
            + "falls linearly to −ppo.overlong_penalty (0: off)", .nonNegative)
    static let overlongPenalty = Key<Double>(
        "ppo.overlong_penalty", 1, "the soft overlong punishment's largest penalty (verl's penalty_factor)",
        .nonNegative)
    static let dynamicSampling = Key<Bool>(
        "ppo.dynamic_sampling", false,
        "DAPO's dynamic sampling: groups whose samples all have the same reward are dropped and refilled with new "
            + "prompts (grpo, dr_grpo, rloo, reinforce_baseline)")
    static let dynamicSamplingRounds = Key<Int>(
        "ppo.dynamic_sampling_rounds", 4,
        "most rollouts an iteration draws to refill dropped groups; groups still missing after them are kept as "
            + "they are (counted in dynamic_sampling_short)", .positive)

    static let stop = Key<String>(
        "ppo.stop", "",
        "stop strings: one string, or a JSON list of them ('[\"</answer>\", \"\\n\\n\"]'); a response ends after "
            + "the token completing one (finished: no missing-EOS penalty), and its text for the rewards ends before it"
    )

    static let keys = [
        stop.declaration, clipLow.declaration, clipHigh.declaration, lossAggregation.declaration, ratio.declaration,
        overlongFilter.declaration, overlongBuffer.declaration, overlongPenalty.declaration,
        dynamicSampling.declaration, dynamicSamplingRounds.declaration,
    ]

    public var clipLow: Float, clipHigh: Float, lossAggregation: LossAggregation, ratio: RatioLevel
    public var overlongFilter: Bool, overlongBuffer: Int, overlongPenalty: Double
    public var dynamicSampling: Bool, dynamicSamplingRounds: Int
    public var stop: StopStrings

    /// `clip` is ppo.clip, which either bound left at 0 takes.
    init(_ c: ResolvedConfig, clip: Float) throws {
        let low = c[Self.clipLow], high = c[Self.clipHigh]
        if low > 0 && high > 0 && c.isSet(PPOSettings.clip.path) {
            throw ConfigError(
                "ppo.clip is set, and ppo.clip_low and ppo.clip_high both replace it: set one or the other")
        }
        clipLow = low > 0 ? Float(low) : clip
        clipHigh = high > 0 ? Float(high) : clip
        lossAggregation = c[Self.lossAggregation]
        ratio = c[Self.ratio]
        overlongFilter = c[Self.overlongFilter]
        overlongBuffer = c[Self.overlongBuffer]
        overlongPenalty = c[Self.overlongPenalty]
        dynamicSampling = c[Self.dynamicSampling]
        dynamicSamplingRounds = c[Self.dynamicSamplingRounds]
        stop = try StopStrings(parsing: c[Self.stop])
        if c.isSet(Self.overlongPenalty.path) && overlongBuffer == 0 {
            throw ConfigError("ppo.overlong_penalty is set but ppo.overlong_buffer is 0, so it would never apply")
        }
        if c.isSet(Self.dynamicSamplingRounds.path) && !dynamicSampling {
            throw ConfigError("ppo.dynamic_sampling_rounds is set but ppo.dynamic_sampling is false")
        }
    }
}
