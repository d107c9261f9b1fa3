import Foundation
import Kernels
import Models
import Roles

/// An estimate of one process's peak memory during PPO, printed before training; the run refuses
/// to start when it exceeds the limit (config `memory.limit_gib`, default 90% of the machine's
/// memory). Float32 everywhere (4 bytes per value), except in precision bf16: a frozen trunk (Hydra's,
/// a reference or reward model) keeps its matrices in bf16 only (2 bytes per parameter), a trained
/// one a bf16 copy beside its fp32 weights (6 bytes), and the KV cache holds bf16 (2 bytes).
///
/// Weights, adapters, gradients and AdamW moments stay for the whole run. Each phase's buffers are
/// freed when it ends: the rollout's KV cache, the scoring chunks, and the training activations
/// the policy and critic share across one update's minibatches (`releaseBuffers`). So the peak is
/// what stays plus the largest phase. `rlhf bench ppo` prints the measured peak RSS beside it.
/// The ranks of one host, and whether they keep the frozen weights once (`HostWeights`).
public struct HostShare: Sendable {
    public let ranks: Int
    public let sharesFrozenWeights: Bool
    public init(ranks: Int, sharesFrozenWeights: Bool) {
        self.ranks = max(ranks, 1)
        self.sharesFrozenWeights = sharesFrozenWeights
    }
    public static let single = HostShare(ranks: 1, sharesFrozenWeights: false)
}

public struct MemoryPlan: CustomStringConvertible {
    public struct Line {
        let role: String
        let weights, adapters, optimizer, generation, scoring, update: Double
    }
    public let lines: [Line]
    /// The ranks of this host; with `host.sharesFrozenWeights` the frozen weights count once for them.
    public var host = HostShare.single
    /// Bytes of frozen weights a host keeps once (Hydra's trunk, the separate layout's reference).
    let frozenBytes: Double
    /// Bytes held throughout the run.
    public var persistentBytes: Double { lines.reduce(0) { $0 + $1.weights + $1.adapters + $1.optimizer } }
    /// The run's peak: what stays plus the largest phase (scoring passes run one at a time).
    public var totalBytes: Double {
        persistentBytes
            + max(
                lines.reduce(0) { $0 + $1.generation }, lines.map(\.scoring).max() ?? 0,
                lines.reduce(0) { $0 + $1.update })
    }

    /// The bytes of the host's ranks at their peaks: each rank's own, plus the frozen weights once
    /// when they are shared (else once per rank).
    public var hostBytes: Double {
        let shared = host.sharesFrozenWeights ? frozenBytes : 0
        return Double(host.ranks) * (totalBytes - shared) + shared
    }

    /// The plan of one process of a PPO run whose rollouts are split over `ranksRollingOut` ranks.
    public init(
        _ cfg: PPOConfig, model: any ModelConfiguration, ranksRollingOut: Int, host: HostShare = .single
    ) throws {
        let ranks = max(ranksRollingOut, 1), p = cfg.ppo
        let micro = p.microBatchSize > 0 ? p.microBatchSize : max(1, p.minibatchSize / ranks)
        // A PPO-ptx step passes a rank's share of a minibatch's size in demonstrations at once.
        let ptxRows = p.ptxCoef > 0 ? (p.minibatchSize + ranks - 1) / ranks : 0
        try self.init(
            config: model, hydra: cfg.layout == .hydra, lora: cfg.loraConfig,
            responses: p.prompts / ranks * p.samples, minibatch: max(micro, ptxRows), maxLength: cfg.maxLength,
            newTokens: p.maxNewTokens, precision: cfg.run.precision.precision, ptx: p.ptxCoef > 0,
            sumsGradients: ranks > 1 || micro < p.minibatchSize)
        self.host = host
    }

    /// `responses` sequences of up to `maxLength` tokens, of which up to `newTokens` are sampled;
    /// `ptx`: PPO-ptx steps on demonstrations of up to `maxLength` tokens as well. `sumsGradients`:
    /// steps sum micro-batches or ranks in Float64 (8 bytes per trained parameter beside the AdamW state).
    public init(
        config c: any ModelConfiguration, hydra: Bool, lora: LoRAConfig, responses: Int, minibatch: Int, maxLength: Int,
        newTokens: Int, precision: Precision = .fp32, ptx: Bool = false, sumsGradients: Bool = false
    ) throws {
        let sums: Double = sumsGradients ? 2 : 0  // Float64 sums, in units of the 4-byte count
        let frozen = Self.frozenWeightBytes(c, precision: precision)
        frozenBytes = frozen
        let params = Double(c.parameterCount) * (precision == .bf16 ? 6 : 4), masters = Double(c.parameterCount) * 4
        let adapter = Double(try makeAdapter(lora, for: c).layout.totalCount) * 4
        let head = Double(c.channels + 1) * 4
        let rank = hydra ? lora.rank : 0
        let training = Self.policyUpdateBytes(
            c, minibatch: minibatch, maxLength: maxLength, newTokens: newTokens, rank: rank, ptx: ptx)
        // The critic's steps take turns with the policy's on the same activation set: only its
        // dHidden and per-token values [M·T, C + 2] are its own.
        let rows = Double(minibatch * maxLength)
        let criticTraining = 4 * rows * Double(c.channels + 2)
        let generation = Self.generationBytes(
            c, responses: responses, maxLength: maxLength, newTokens: newTokens, rank: rank, precision: precision)
        // Scoring (reference, old log-probs, values): one chunk at a time (see ScoringChunks).
        let chunk = min(responses, ScoringChunks.sequencesPerChunk(c, tokens: maxLength, loraRank: rank))
        let scoring = ScoringChunks.bytes(c, batch: chunk, tokens: maxLength, loraRank: rank)
        // Trainable state: gradients + two AdamW moments (+ the Float64 sum of a step's parts).
        if hydra {
            lines = [
                Line(
                    role: "trunk (shared)", weights: frozen, adapters: 0, optimizer: 0, generation: 0, scoring: scoring,
                    update: 0),
                Line(
                    role: "policy", weights: 0, adapters: adapter, optimizer: (3 + sums) * adapter,
                    generation: generation,
                    scoring: 0, update: training),
                Line(
                    role: "critic", weights: head, adapters: adapter, optimizer: (3 + sums) * (adapter + head),
                    generation: 0,
                    scoring: 0, update: criticTraining),
                Line(
                    role: "reference + reward", weights: head, adapters: 0, optimizer: 0, generation: 0, scoring: 0,
                    update: 0),
            ]
        } else {
            lines = [
                Line(
                    role: "policy", weights: params, adapters: 0, optimizer: (3 + sums) * masters,
                    generation: generation,
                    scoring: scoring, update: training),
                Line(
                    role: "critic", weights: params + head, adapters: 0, optimizer: (3 + sums) * (masters + head),
                    generation: 0,
                    scoring: 0, update: criticTraining),
                Line(
                    role: "reference", weights: frozen, adapters: 0, optimizer: 0, generation: 0, scoring: 0,
                    update: 0),
                Line(
                    role: "reward", weights: frozen + head, adapters: 0, optimizer: 0, generation: 0, scoring: 0,
                    update: 0),
            ]
        }
    }

    /// A frozen trunk's weights: fp32; in bf16 its bf16 copy and the fp32 values of what is not a
    /// projection matrix (`keepOnlyBF16`: embeddings, norms, biases). A trained trunk in bf16 holds
    /// the copy beside all its fp32 weights instead (6 bytes per parameter).
    static func frozenWeightBytes(_ c: any ModelConfiguration, precision: Precision) -> Double {
        let all = Double(c.parameterCount), matrices = Double(c.bf16OnlyRanges.reduce(0) { $0 + $1.count })
        return precision == .bf16 ? 2 * all + 4 * (all - matrices) : 4 * all
    }

    /// The policy's update: the training activations of one minibatch kept for the backward (reused
    /// across the update's minibatches and shared with the critic), dHidden [M·T, C], and the LM head
    /// over the response rows only (HeadRows): logits [M·A, V], the gathered hidden states and their
    /// gradient [M·A, C]. PPO-ptx reads a demonstration's every position: up to T − 1 rows each.
    static func policyUpdateBytes(
        _ c: any ModelConfiguration, minibatch: Int, maxLength: Int, newTokens: Int, rank: Int, ptx: Bool
    ) -> Double {
        let rows = Double(minibatch * maxLength)
        let read = Double(minibatch * (ptx ? max(newTokens, maxLength - 1) : min(newTokens, maxLength)))
        return c.trainingActivationBytes(batch: minibatch, tokens: maxLength, loraRank: rank, lmHead: false)
            + 4 * (read * Double(c.vocabSize + 2) + Double(c.vocabSize)) + 4 * (rows + 2 * read) * Double(c.channels)
    }

    /// Generation: keys and values of G heads of d for every layer and position, the prefill's
    /// inference buffers over one group of prompts (`prefillGroups`), then the step's logits [B, V].
    static func generationBytes(
        _ c: any ModelConfiguration, responses: Int, maxLength: Int, newTokens: Int, rank: Int, precision: Precision
    ) -> Double {
        let kv = Double(2 * KVCacheStorage.bytes(precision) * c.layers * responses * maxLength * c.kvHeads * c.headSize)
        let prompt = max(1, maxLength - newTokens)
        let group = min(responses, PrefillGroups.prompts(c, length: prompt, loraRank: rank))
        return kv
            + max(
                c.inferenceActivationBytes(batch: group, tokens: prompt, loraRank: rank),
                4 * Double(responses) * Double(c.vocabSize + 2))
    }

    static func mib(_ bytes: Double) -> String { String(format: "%.1f", bytes / 1_048_576) }

    public var description: String {
        var out = "memory plan (MiB)      weights  adapters  optimizer  generation  scoring  update\n"
        for l in lines {
            out += l.role.padding(toLength: 22, withPad: " ", startingAt: 0)
            for (v, width) in [
                (l.weights, 9), (l.adapters, 9), (l.optimizer, 10), (l.generation, 11), (l.scoring, 8), (l.update, 7),
            ] {
                out += " " + String(repeating: " ", count: max(0, width - Self.mib(v).count)) + Self.mib(v)
            }
            out += "\n"
        }
        out +=
            "peak \(Self.mib(totalBytes)) MiB per rank (held throughout \(Self.mib(persistentBytes)), plus the largest "
            + "of generation, scoring and update)"
        guard host.ranks > 1 else { return out }
        let frozen = host.sharesFrozenWeights ? "the frozen weights (\(Self.mib(frozenBytes))) once" : "nothing shared"
        return out + "\nhost of \(host.ranks) ranks: \(Self.mib(hostBytes)) MiB (\(frozen))"
    }

    /// 90% of MemTotal from /proc/meminfo (nil when unreadable).
    public static var defaultLimitBytes: Double? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal:") }),
            let kib = Double(line.split(separator: " ").dropFirst().first ?? "")
        else { return nil }
        return 0.9 * kib * 1024
    }
}
