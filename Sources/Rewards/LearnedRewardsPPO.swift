import Alignment
import Cluster
import Config
import Foundation
import Kernels
import Models
import Roles
import Tokenizers

/// How PPO builds and uses `LearnedRewards` (the keys rewards.proxy_heads, rewards.selection,
/// laser.*, r2m.*).
extension LearnedRewards {
    /// nil when no proxy heads are configured. A head trained alone on model.init_from
    /// (rm.train_trunk=false) is read on the shared pass; a fine-tuned reward model keeps its trunk.
    /// `namedArms`: the run's other reward sources, which LASeR may also choose (laser.arms).
    /// `host`: the ranks of this host that keep a proxy's own trunk once (`HostWeights`; every one
    /// of them calls this), or nil.
    package static func make(
        _ cfg: RewardConfig, base: any CausalLM, originalHead: ScalarHead, seed: UInt64, namedArms: [String],
        host: (any Transport)? = nil
    ) async throws -> LearnedRewards? {
        guard try checkSelection(cfg, namedArms: namedArms) else { return nil }
        var heads: [ScalarHead] = [], trunks: [(any CausalLM)?] = []
        for path in cfg.rewards.proxyHeads {
            let (head, trunk) = try await loadHead(path, base: base, precision: cfg.precision, host: host)
            if let trunk { try await HostWeights.keepOnlyBF16(trunk, host: host) }  // only scored: bf16 alone
            heads.append(head)
            trunks.append(trunk)
        }
        var r2m: R2MFusion?
        if cfg.rewards.selection == .r2m {
            let c = base.config.channels
            r2m = R2MFusion(
                channels: c, policyChannels: c,
                attentionSize: cfg.r2m.attentionSize > 0 ? cfg.r2m.attentionSize : max(c / 2, 1))
            var rng = RNG(seed: seed &+ 0x2A2)
            r2m!.initialize(rewardHead: heads[0].parameters.array, rng: &rng)
        }
        let arms = cfg.laser.arms
        return LearnedRewards(
            names: heads.indices.map { "proxy\($0 + 1)" }, heads: heads, trunks: trunks, channels: base.config.channels,
            selection: cfg.rewards.selection, arms: arms.isEmpty ? nil : arms, laser: cfg.laser, r2m: r2m,
            r2mSettings: cfg.r2m, iterations: cfg.iterations, seed: seed)
    }

    /// Whether the config asks for learned rewards (proxy heads or LASeR's named arms), refusing
    /// settings that cannot work: arms without a bandit, a selection or weight without heads,
    /// arms that are not sources of the run, held-out scoring without heads.
    static func checkSelection(_ cfg: RewardConfig, namedArms: [String]) throws -> Bool {
        let list = cfg.rewards.proxyHeads, arms = cfg.laser.arms, selection = cfg.rewards.selection
        guard arms.isEmpty || selection == .laser || selection == .random else {
            throw ConfigError("'laser.arms' needs rewards.selection: laser (or random)")
        }
        guard !list.isEmpty || !arms.isEmpty else {
            guard cfg.rewards.proxy == 0 else { throw ConfigError("rewards.proxy > 0 needs 'rewards.proxy_heads'") }
            guard selection == .mean else {
                throw ConfigError(
                    "rewards.selection \(selection.rawValue) needs 'rewards.proxy_heads' (or, for laser and random, "
                        + "'laser.arms')")
            }
            return false
        }
        for arm in arms where !(namedArms.contains(arm) || proxyIndex(arm).map { $0 < list.count } == true) {
            throw ConfigError(
                "'laser.arms': '\(arm)' is not a reward source of this run "
                    + "(\(namedArms.joined(separator: ", ")), proxy1…proxy\(list.count))")
        }
        if cfg.laser.signal == .heldout && selection == .laser && list.isEmpty {
            throw ConfigError(
                "laser.reward heldout scores held-out responses with 'rewards.proxy_heads'; set some or use "
                    + "laser.reward loss")
        }
        return true
    }

    /// A proxy head from an rm checkpoint folder or a .safetensors file. A folder with a model of
    /// its own (an rm checkpoint that trained its trunk) keeps that trunk, frozen in `precision` and
    /// once per host (read by the host's first rank, mapped by the others: every rank compares the
    /// same values with the base, so all keep it or all drop it); one whose model is the base's is
    /// read on the shared pass (nil trunk).
    static func loadHead(
        _ path: String, base: any CausalLM, precision: Precision, host: (any Transport)?
    ) async throws -> (head: ScalarHead, trunk: (any CausalLM)?) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ConfigError("'rewards.proxy_heads': \(path) does not exist")
        }
        let folder = isDirectory.boolValue ? path : (path as NSString).deletingLastPathComponent
        let file = isDirectory.boolValue ? ScalarHeadIO.fileName : (path as NSString).lastPathComponent
        var own: (any CausalLM)?
        if isDirectory.boolValue,
            FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("model.safetensors"))
        {
            let trunk = try await HostWeights.frozen(
                host: host, precision: precision, config: { try HFCheckpoint.readConfig(directory: path) },
                load: { try HFCheckpoint.load(directory: path) })
            guard trunk.config.channels == base.config.channels else {
                throw ConfigError(
                    "'rewards.proxy_heads': \(path) is \(trunk.config.channels) wide, the policy "
                        + "\(base.config.channels)"
                )
            }
            try base.requireFP32Weights(for: "'rewards.proxy_heads' (comparing \(path) with the policy's trunk)")
            let same =
                trunk.config.isEqual(to: base.config)
                && withExtendedLifetime((trunk, base)) {
                    memcmp(
                        trunk.weights.pointer, base.weights.pointer, trunk.weights.count * MemoryLayout<Float>.stride)
                        == 0
                }
            if !same { own = trunk }
        }
        return (try ScalarHeadIO.load(directory: folder, channels: base.config.channels, fileName: file), own)
    }

    /// "proxyK" → K − 1, the index of proxy head K; nil for other names.
    package static func proxyIndex(_ name: String) -> Int? {
        guard name.hasPrefix("proxy"), let k = Int(name.dropFirst(5)), k >= 1 else { return nil }
        return k - 1
    }

    /// One batch's learned reward: the heads' scores, the reward (the selection's pick, R2M's
    /// fusion or the heads' mean), the arm chosen and the states R2M's update reads again.
    package struct Scored {
        package var proxy: [Double], perHead: [[Double]], arm: Int?
        /// The chosen arm's scores (laser, random): a head's, or (set by the source) a named source's.
        package var armScores: [Double]?
        /// [B][C] the reward token's state of proxy 1 (R2M's h_rm).
        package var lastHidden: [[Float]]
    }

    /// The learned reward of a batch from the scoring passes' states (`batch.lastHidden`, and for
    /// LASeR and R2M `batch.policyHidden`); a proxy with its own trunk runs it here. Selecting
    /// prompts (Pre-PPO), the reward is the heads' mean: no bandit step, no fusion.
    package func score(_ batch: RewardBatch, replicas: (any Transport)?) async throws -> Scored {
        let states = try proxyStates(batch.sequences, shared: batch.lastHidden)
        let perHead = headScores(states)
        // R2M's h_rm is proxy 1's state at the reward token (no heads: LASeR over named sources only).
        let rewardStates = states.first ?? batch.lastHidden
        guard batch.purpose == .training else {
            return Scored(
                proxy: ensemble(perHead, count: batch.sequences.count), perHead: perHead, arm: nil,
                lastHidden: rewardStates)
        }
        let (proxy, arm) = try await rewards(
            iteration: batch.iteration, scores: perHead, lastHidden: rewardStates, policyHidden: batch.policyHidden,
            promptLengths: batch.promptLengths, channels: channels, replicas: replicas)
        return Scored(
            proxy: proxy, perHead: perHead, arm: arm,
            armScores: arm.flatMap { a in LearnedRewards.proxyIndex(armNames[a]).map { perHead[$0] } },
            lastHidden: rewardStates)
    }
}
