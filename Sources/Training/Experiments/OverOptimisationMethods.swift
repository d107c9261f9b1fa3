import Config
import Datasets
import Foundation
import Rewards

extension OverOptimisation {
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
        /// The fair hybrid routing: a verifier weaker than the gold (study.fair_verifier), a GenRM
        /// trained with the proxies' label budget and noise (with the answer, or against best-of-N).
        case hybrid
        /// The hybrid as the first edition ran it, an upper bound: the gold's own rules as verifier
        /// and a GenRM trained on every (noise-free) judgement.
        case hybridGold
        /// The control: the fair verifier on the same prompts, proxy 1 on the rest (no GenRM).
        case verifierProxy
        /// The fair hybrid with Pre-PPO (the hardest prompts by the whole reward) and the
        /// verifier-first curriculum; with Pre-PPO alone; with the curriculum alone; with a random
        /// subset of Pre-PPO's size (Pre-PPO's controls).
        case hybridPrePPO, prePPOOnly, curriculumOnly, randomSubset

        static let named: [String: Method] = [
            "proxy": .proxy(1), "ensemble": .ensemble, "r2m": .r2m, "r2m_no_feedback": .r2mNoFeedback,
            "r2m_no_update": .r2mNoUpdate, "laser": .laser, "random": .random, "hybrid": .hybrid,
            "hybrid_gold": .hybridGold, "verifier_proxy": .verifierProxy, "hybrid_prepo": .hybridPrePPO,
            "hybrid_prepo_only": .prePPOOnly, "hybrid_curriculum": .curriculumOnly,
            "hybrid_random_subset": .randomSubset,
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

        /// Every method the routed (hybrid) reward trains.
        var isRouted: Bool {
            [.hybrid, .hybridGold, .verifierProxy, .hybridPrePPO, .prePPOOnly, .curriculumOnly, .randomSubset]
                .contains(self)
        }
        /// Routed methods that judge with the fair GenRM.
        var usesFairGenRM: Bool { isRouted && self != .hybridGold && self != .verifierProxy }
        var isR2M: Bool { [.r2m, .r2mNoFeedback, .r2mNoUpdate].contains(self) }
        var keepsPrompts: Bool { [.hybridPrePPO, .prePPOOnly, .randomSubset].contains(self) }
        var usesCurriculum: Bool { self == .hybridPrePPO || self == .curriculumOnly }

        var selection: RewardSelection {
            switch self {
            case .r2m, .r2mNoFeedback, .r2mNoUpdate: return .r2m
            case .laser: return .laser
            case .random: return .random
            default: return .mean
            }
        }

        /// The reward source PPO optimises (its reward_<name>_mean is the summary's "proxy").
        var trainedSource: String {
            switch self {
            case .r2m, .r2mNoFeedback, .r2mNoUpdate: return "r2m"
            default: return isRouted ? "hybrid" : "proxy"
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

    /// A method as study.methods names it: the method, then any `+key=value` overrides of its PPO
    /// keys (rl.* without the prefix), e.g. `laser+laser.alpha=1` or `r2m+r2m.lr=1e-5+r2m.steps=4`.
    /// The whole text is its name (its folder and its row).
    public struct MethodSpec: Hashable, Sendable, CustomStringConvertible {
        public var method: Method
        public var overrides: [String]
        public var description: String { ([method.description] + overrides).joined(separator: "+") }

        public init(_ method: Method, overrides: [String] = []) {
            self.method = method
            self.overrides = overrides
        }

        /// Parses `name+key=value+…`; the keys are checked against PPO's schema and may not be the
        /// ones every method sets itself.
        init(parsing text: String, ppo: ResolvedConfig) throws {
            let parts = text.split(separator: "+", omittingEmptySubsequences: false).map(String.init)
            guard let method = Method(name: parts[0]) else {
                throw ConfigError(
                    "'study.methods': '\(parts[0])' is not a method (proxy, proxyK, "
                        + "\(Method.named.keys.filter { $0 != "proxy" }.sorted().joined(separator: ", ")))")
            }
            let overrides = Array(parts.dropFirst())
            for o in overrides {
                let key = String(o.split(separator: "=", maxSplits: 1).first ?? "")
                guard o.contains("="), !key.isEmpty else {
                    throw ConfigError("'study.methods': '\(text)': '\(o)' is not key=value")
                }
                if Settings.setByMethods.contains("rl." + key) {
                    throw ConfigError("'study.methods': '\(text)' sets '\(key)', which each method sets itself")
                }
                // The seed, folders, data and starting model are the study's, shared by its methods.
                if shared.contains(key) || key.hasPrefix("data.") || key.hasPrefix("model.") {
                    throw ConfigError(
                        "'study.methods': '\(text)' sets '\(key)', which the study sets for every method (only "
                            + "PPO's own keys may differ)")
                }
            }
            do { _ = try ppo.overriding(overrides) } catch {
                throw ConfigError("'study.methods': '\(text)': \(error)")
            }
            self.init(method, overrides: overrides)
        }
    }

    /// The PPO run of `spec` on a seed: its reward (heads, selection, routing), its prompts and its
    /// overrides on top of the study's rl.* keys (`base`, its run folder set).
    static func methodConfig(_ spec: MethodSpec, setup: SeedSetup, study: Settings, base: ResolvedConfig) throws
        -> ResolvedConfig
    {
        let method = spec.method
        let heads = method.heads(of: study.proxies).map { setup.proxies[$0 - 1] }
        var c = try base.with(RunSettings.resume, "never").with(RunSettings.initFrom, ConfigPath(setup.sftModel))
            .with(RewardSettings.proxyHeads, heads.joined(separator: ",")).with(
                RewardSettings.selection, method.selection
            )
            .with(RewardSettings.proxy, 1).with(RewardSettings.verifier, 0).with(RewardSettings.format, 0)
            .with(RewardSettings.rewardHead, 0)
        if method == .r2mNoFeedback { c = try c.with(R2MSettings.policyFeedback, false) }
        if method == .r2mNoUpdate { c = try c.with(R2MSettings.update, false) }
        if method.isR2M { c = try c.with(R2MSettings.heldoutPairs, ConfigPath(setup.heldoutPairs)) }
        if method.isRouted { c = try routed(method, config: c, setup: setup, study: study) }
        return spec.overrides.isEmpty ? c : try c.overriding(spec.overrides)
    }

    /// The routed reward's keys: the verifier (the gold's rules for hybrid_gold, study.fair_verifier
    /// otherwise), the GenRM or proxy 1 on the other routes, the routed prompts; Pre-PPO
    /// (Shen et al. 2025: the hardest prompts by the whole reward, or its random control) and the
    /// verifier's (math) prompts first.
    static func routed(_ method: Method, config: ResolvedConfig, setup: SeedSetup, study: Settings) throws
        -> ResolvedConfig
    {
        var c = try config.with(RewardSettings.hybrid, 1).with(RewardSettings.proxy, 0)
            .with(RewardSettings.verifierTasks, method == .hybridGold ? "arith" : "arith=" + study.fairVerifier)
            .with(RewardSettings.referenceTasks, "arith-ref").with(DataSettings.task, DataTask.none)
            .with(DataSettings.train, ConfigPath(setup.folder + "/prompts.jsonl"))
            .with(DataSettings.eval, ConfigPath(setup.folder + "/eval.jsonl"))
        if method == .verifierProxy {
            c = try c.with(RewardSettings.proxyTasks, "arith-ref,arith-open")
        } else if let judge = method == .hybridGold ? setup.genrmGold : setup.genrmFair {
            c = try c.with(RewardSettings.genrmModel, ConfigPath(judge))
        }
        if method.keepsPrompts {
            c = try c.with(PromptSelectionSettings.keep, study.prepoKeep)
                .with(PromptSelectionSettings.candidates, study.prepoCandidates)
                .with(PromptSelectionSettings.rule, method == .randomSubset ? .random : .hardest)
        }
        if method.usesCurriculum && study.curriculumShare > 0 {
            c = try c.with(PromptSelectionSettings.curriculumTasks, "arith")
                .with(PromptSelectionSettings.curriculumShare, study.curriculumShare)
        }
        return c
    }
}
