import Alignment
import Cluster
import Foundation
import Kernels
import Models
import Roles
import Runs

/// PPO's learned proxy rewards on the frozen Hydra trunk (issue 7): reward heads read at the
/// last token of the adapters-off pass, combined per batch in one of three ways —
/// `mean` (the ensemble), `laser` (LinUCB picks one head per batch from the policy's prompt
/// states; Nguyen et al. 2025, algorithms.md §9) or `r2m` (the first head fused with the
/// policy's response states and updated online; Huang et al. 2026, §7).
package final class LearnedRewards {
    package let names: [String]
    package let heads: [ScalarHead]
    /// A proxy's own trunk when it was fine-tuned with its head; nil: the head reads the shared
    /// frozen trunk's adapters-off pass (the Hydra way, no extra forward).
    package let trunks: [(any CausalLM)?]
    package let selection: RewardSelection
    package var bandit: LinUCB?
    package let laserSignal: LaserSignal
    package let r2m: R2MHead?
    package let r2mOptimizer: AdamW?
    package let r2mGradients: FloatBuffer?
    package let r2mWeightMax: Double, r2mRampIterations: Double
    /// The arm LASeR chose for the current batch and its context.
    package var pending: (arm: Int, context: [Double])?
    package var previousEnsembleMean: Double?

    /// LASeR's arms: the proxy heads by default, or any named reward sources (laser.arms).
    package let armNames: [String]
    package var explicitArms: Bool { armNames != names }

    package init(names: [String], heads: [ScalarHead], trunks: [(any CausalLM)?], channels: Int, selection: RewardSelection, arms: [String]? = nil, laserAlpha: Double,
         laserSignal: LaserSignal, r2m: R2MHead?, r2mLR: Float, r2mWeightMax: Double, r2mRampIterations: Double) {
        precondition(names.count == heads.count && (!heads.isEmpty || !(arms ?? []).isEmpty))
        self.names = names; self.heads = heads; self.trunks = trunks; self.selection = selection; self.laserSignal = laserSignal
        armNames = arms ?? names
        bandit = selection == .laser ? LinUCB(dimension: channels, arms: armNames.count, alpha: laserAlpha) : nil
        self.r2m = r2m
        r2mOptimizer = r2m.map { AdamW(layout: $0.layout, hyper: AdamWHyperparameters(learningRate: r2mLR, weightDecay: 0)) }
        r2mGradients = r2m.map { FloatBuffer(count: $0.parameters.count) }
        self.r2mWeightMax = r2mWeightMax; self.r2mRampIterations = r2mRampIterations
    }

    package var needsPolicyHidden: Bool { r2m != nil || bandit != nil }

    /// w(t) = w_max · min(1, t / T_ramp) (our proposal, §7.2).
    package func r2mWeight(iteration: Int) -> Double { r2mRampIterations <= 0 ? r2mWeightMax : r2mWeightMax * min(1, Double(iteration) / r2mRampIterations) }

    /// Each proxy's last-token states [K][N][C]: the shared pass's, or its own trunk's.
    package func proxyStates(_ sequences: [[Int32]], shared: [[Float]]) throws -> [[[Float]]] {
        try trunks.map { trunk in try trunk.map { try $0.lastHiddenStates(sequences) } ?? shared }
    }

    /// Scores of every head [K][N] from its last-token states.
    package func headScores(_ states: [[[Float]]]) -> [[Double]] {
        zip(heads, states).map { h, last in h.forward(hidden: last.flatMap { $0 }, rows: last.count).map(Double.init) }
    }

    /// LASeR's context: the policy's final states over each prompt's tokens, mean-pooled per
    /// prompt, then over the batch (every rank's), L2-normalised.
    package func context(policyHidden: [[Float]], promptLengths: [Int], channels c: Int, replicas: (any Transport)?) async throws -> [Double] {
        var sum = [Double](repeating: 0, count: c + 1)
        for (h, n) in zip(policyHidden, promptLengths) {
            for t in 0..<n { for j in 0..<c { sum[j] += Double(h[t * c + j]) / Double(n) } }
            sum[c] += 1
        }
        if let replicas { sum = try await replicas.allReduce(sum, op: .sum) }
        var x = sum[0..<c].map { $0 / max(sum[c], 1) }
        let norm = x.reduce(0) { $0 + $1 * $1 }.squareRoot()
        if norm > 0 { x = x.map { $0 / norm } }
        return x
    }

    /// The proxy reward of each sequence, and the arm LASeR chose (nil otherwise).
    package func rewards(iteration: Int, scores: [[Double]], lastHidden: [[Float]], policyHidden: [[Float]], promptLengths: [Int],
                 channels: Int, replicas: (any Transport)?) async throws -> (values: [Double], arm: Int?) {
        if let bandit {
            let x = try await context(policyHidden: policyHidden, promptLengths: promptLengths, channels: channels, replicas: replicas)
            // Each arm once first (round robin), then LinUCB: with contexts this alike, an arm
            // never played may otherwise never be tried.
            let arm = iteration <= bandit.arms ? iteration - 1 : bandit.select(x)
            pending = (arm, x)
            // Named arms: the stage takes the chosen source's values; the proxy is the heads' mean.
            if explicitArms { return (ensemble(scores, count: lastHidden.count), arm) }
            return (scores[arm], arm)
        }
        if let r2m {
            let w = Float(r2mWeight(iteration: iteration))
            return (lastHidden.indices.map { i in
                Double(r2m.forward(rewardHidden: lastHidden[i], policyHidden: responseStates(policyHidden[i], from: promptLengths[i], channels: channels), weight: w).reward)
            }, nil)
        }
        return (ensemble(scores, count: lastHidden.count), nil)
    }

    /// The heads' mean score per sequence (zeros without heads).
    package func ensemble(_ scores: [[Double]], count: Int) -> [Double] {
        (0..<count).map { i in scores.isEmpty ? 0 : scores.reduce(0) { $0 + $1[i] } / Double(scores.count) }
    }

    /// After the iteration's update: LASeR learns from −(mean policy loss), or from the held-out
    /// score gain — the heads' mean score of greedy responses to fixed held-out prompts after this
    /// update minus after the previous one.
    package func finishIteration(policyLoss: Double, heldOut: Double?) {
        defer { if let heldOut { previousEnsembleMean = heldOut } }
        guard var b = bandit, let (arm, x) = pending else { return }
        let signal = laserSignal == .loss ? -policyLoss : (heldOut ?? 0) - (previousEnsembleMean ?? heldOut ?? 0)
        b.update(arm: arm, context: x, reward: signal)
        bandit = b
        pending = nil
    }

    /// The policy's states on the response tokens [A, C] of a sequence whose prompt has `from` tokens.
    package func responseStates(_ hidden: [Float], from promptLength: Int, channels c: Int) -> [Float] {
        Array(hidden[(promptLength * c)...])
    }

    /// One online R2M update (§7.2 proposal): Bradley–Terry on replayed preference pairs, with
    /// the current policy's states, plus λ·mean((R2M − R0)²) on this batch's rollouts against the
    /// original head. Only the fusion and head train. Returns (pair loss, anchor loss).
    package func updateR2M(iteration: Int, pairs: [(chosen: (last: [Float], policy: [Float]), rejected: (last: [Float], policy: [Float]))],
                   rollouts: [(last: [Float], policy: [Float], original: Double)], anchor: Double, learningRate: Float,
                   replicas: (any Transport)?) async throws -> (Double, Double) {
        guard let r2m, let optimizer = r2mOptimizer, let grads = r2mGradients else { return (0, 0) }
        let w = Float(r2mWeight(iteration: iteration))
        // Rollout anchor: each rank's own rollouts, summed over ranks.
        grads.zero()
        var anchorSums = [0.0, Double(rollouts.count)]
        for r in rollouts {
            let cache = r2m.forward(rewardHidden: r.last, policyHidden: r.policy, weight: w)
            let error = Double(cache.reward) - r.original
            anchorSums[0] += error * error
            r2m.backward(cache, dReward: Float(2 * anchor * error), gradients: grads)
        }
        if let replicas {
            try await replicas.allReduce(grads, op: .sum)
            anchorSums = try await replicas.allReduce(anchorSums, op: .sum)
        }
        let rolloutCount = max(anchorSums[1], 1)
        for i in 0..<grads.count { grads[i] /= Float(rolloutCount) }
        // Replayed pairs: the same on every rank, so every replica takes the same step.
        var pairLoss = 0.0
        for p in pairs {
            let cw = r2m.forward(rewardHidden: p.chosen.last, policyHidden: p.chosen.policy, weight: w)
            let cl = r2m.forward(rewardHidden: p.rejected.last, policyHidden: p.rejected.policy, weight: w)
            let (l, dw, dl) = BradleyTerry.loss(chosen: Double(cw.reward), rejected: Double(cl.reward), margin: 0)
            pairLoss += l
            r2m.backward(cw, dReward: Float(dw / Double(pairs.count)), gradients: grads)
            r2m.backward(cl, dReward: Float(dl / Double(pairs.count)), gradients: grads)
        }
        clipGradientNorm(grads, maxNorm: 1)
        optimizer.update(parameters: r2m.parameters, gradients: grads, learningRate: learningRate)
        return (pairLoss / Double(max(pairs.count, 1)), anchor * anchorSums[0] / rolloutCount)
    }
}

/// What a PPO checkpoint keeps of the learned rewards: the bandit, and R2M's parameters and moments.
extension LearnedRewards {
    package struct State: Codable { var bandit: LinUCB?; var previousEnsembleMean: Double?; var r2mStep: Int? }
    package static let stateFile = "learned_rewards.json"

    /// R2M's parameters and moments, saved with the roles' in ppo_state.safetensors.
    package func snapshots() -> [String: TrainableSnapshot] {
        guard let r2m, let o = r2mOptimizer else { return [:] }
        return ["r2m": TrainableSnapshot(parameters: r2m.parameters.array, m: o.m.array, v: o.v.array, step: o.step)]
    }

    /// The bandit and its last held-out score, as learned_rewards.json in a checkpoint folder.
    package func writeState(directory: String) throws {
        let state = State(bandit: bandit, previousEnsembleMean: previousEnsembleMean, r2mStep: r2mOptimizer?.step)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        try encoder.encode(state).write(to: URL(fileURLWithPath: (directory as NSString).appendingPathComponent(Self.stateFile)))
    }

    package func restore(directory: String, snapshots: [String: TrainableSnapshot]) throws {
        let path = (directory as NSString).appendingPathComponent(Self.stateFile)
        guard let data = FileManager.default.contents(atPath: path) else { throw TrainingError("\(path): missing (the checkpoint has no learned-reward state)") }
        let state = try JSONDecoder().decode(State.self, from: data)
        bandit = state.bandit; previousEnsembleMean = state.previousEnsembleMean
        if let r2m, let o = r2mOptimizer {
            guard let s = snapshots["r2m"], s.parameters.count == r2m.parameters.count else { throw TrainingError("\(directory): no R2M state") }
            s.parameters.withUnsafeBufferPointer { r2m.parameters.pointer.update(from: $0.baseAddress!, count: $0.count) }
            try o.restore(m: s.m, v: s.v, step: s.step)
        }
    }
}
