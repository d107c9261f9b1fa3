import Alignment
import Cluster
import Foundation
import Kernels
import Models
import Tokenizers

/// The reward half of Hydra-SFT (algorithms.md §1.3): L = L_LM + w · L_BT, with
/// L_BT = −log σ(r(x, y_w) − r(x, y_l)) read by a scalar head at each sequence's last token,
/// on the same trunk as the LM. Pairs stream epoch by epoch like the demonstrations.
final class HydraPairs {
    struct Pair { let chosen: [Int32], rejected: [Int32], margin: Double, openEnded: Bool }
    let pairs: [Pair]
    let evalPairs: [Pair]
    let weight: Double
    let batchSize: Int
    let seed: UInt64
    let head: ScalarHead
    let headGradients: FloatBuffer, headSum: GradientSum
    let optimizer: AdamW
    /// "bt", a `RankUtility` raw value, or "adaptive" (x for closed prompts, x_inv for open-ended ones).
    let utility: String
    let centerCoefficient: Double

    /// The pair loss and its derivatives with respect to r_w and r_l (algorithms.md §3).
    func pairLoss(_ p: Pair, chosen rw: Double, rejected rl: Double) -> (Double, Double, Double) {
        var (l, dw, dl): (Double, Double, Double)
        if utility == "bt" {
            (l, dw, dl) = BradleyTerry.loss(chosen: rw, rejected: rl, margin: p.margin)
        } else {
            let u = utility == "adaptive" ? (p.openEnded ? RankUtility.xInverse : .x) : RankUtility(rawValue: utility)!
            (l, dw, dl) = u.pairLoss(positive: rw, negative: rl)
        }
        if centerCoefficient > 0 {   // c·(r_w + r_l)² pulls the mean reward to 0 (Eisenstein et al.)
            let s = rw + rl
            l += centerCoefficient * s * s; dw += 2 * centerCoefficient * s; dl += 2 * centerCoefficient * s
        }
        return (l, dw, dl)
    }

    static func sequence(_ prompt: String, _ response: String, tokenizer: any Tokenizer, maxLength: Int, source: String) throws -> [Int32] {
        let s = (tokenizer.bosTokenId.map { [$0] } ?? []) + tokenizer.encode(prompt) + tokenizer.encode(response) + (tokenizer.eosTokenId.map { [$0] } ?? [])
        guard s.count <= maxLength + 1 else { throw DatasetError("\(source): \(s.count) tokens exceed train.max_length (\(maxLength))") }
        return s
    }

    init(train: [PreferenceExample], eval: [PreferenceExample], tokenizer: any Tokenizer, maxLength: Int, weight: Double,
         batchSize: Int, seed: UInt64, head: ScalarHead, hyper: AdamWHyperparameters, utility: String = "bt", centerCoefficient: Double = 0) throws {
        self.utility = utility; self.centerCoefficient = centerCoefficient
        func tokenize(_ e: PreferenceExample) throws -> Pair {
            Pair(chosen: try Self.sequence(e.prompt, e.chosen, tokenizer: tokenizer, maxLength: maxLength, source: e.source),
                 rejected: try Self.sequence(e.prompt, e.rejected, tokenizer: tokenizer, maxLength: maxLength, source: e.source),
                 margin: e.margin ?? 0, openEnded: e.openEnded ?? false)
        }
        guard !train.isEmpty else { throw DatasetError("Hydra-SFT needs preference pairs (data.prefs or a task)") }
        pairs = try train.map(tokenize)
        evalPairs = try eval.map(tokenize)
        self.weight = weight; self.batchSize = batchSize; self.seed = seed; self.head = head
        headGradients = FloatBuffer(count: head.parameters.count)
        headSum = GradientSum(count: head.parameters.count)
        var layout = TensorLayout()
        layout.add("v_head.summary", [head.channels + 1])
        optimizer = AdamW(layout: layout, hyper: hyper)
    }

    /// The global pair batch at `cursor` (examples consumed), in the epoch's seeded order.
    func batch(cursor: Int) -> [Pair] {
        var out: [Pair] = []
        var cache: (Int, [Int])?
        for position in cursor..<(cursor + batchSize) {
            let epoch = position / pairs.count
            if cache?.0 != epoch {
                var rng = RNG(seed: seed &+ 0x5151 &+ UInt64(epoch) &* 0x9E37_79B9)
                var order = Array(pairs.indices)
                shuffle(&order, &rng)
                cache = (epoch, order)
            }
            out.append(pairs[cache!.1[position % pairs.count]])
        }
        return out
    }

    /// Rewards at the last token of each sequence, keeping what the backward needs.
    func scores(trunk: GPT2Trunk, _ sequences: [[Int32]]) throws -> (values: [Float], act: TrunkActivations, last: FloatBuffer, length: Int) {
        let length = sequences.map(\.count).max()!
        var tokens = [Int32](repeating: 0, count: sequences.count * length)
        for (r, s) in sequences.enumerated() { for (j, t) in s.enumerated() { tokens[r * length + j] = t } }
        let act = TrunkActivations(config: trunk.config, batch: sequences.count, tokens: length)
        try trunk.forward(tokens: tokens, activations: act)
        let c = trunk.config.channels
        let last = FloatBuffer(count: sequences.count * c)
        for (r, s) in sequences.enumerated() { (last.pointer + r * c).update(from: act.hidden.pointer + (r * length + s.count - 1) * c, count: c) }
        return (head.forward(hidden: last.pointer, rows: sequences.count), act, last, length)
    }

    /// Forward + backward of w · mean BT loss over this rank's share of the global pair batch,
    /// adding trunk gradients to `trunkSum` and head gradients to `headSum`. Returns (Σ loss, Σ correct).
    func accumulate(trunk: GPT2Trunk, mine: [Pair], globalCount: Int, trunkGradients: FloatBuffer, trunkSum: GradientSum) throws -> (Double, Double) {
        guard !mine.isEmpty else { return (0, 0) }
        let sequences = mine.map(\.chosen) + mine.map(\.rejected)
        let (r, act, last, length) = try scores(trunk: trunk, sequences)
        let n = mine.count, c = trunk.config.channels
        var dValues = [Float](repeating: 0, count: 2 * n)
        var loss = 0.0, correct = 0.0
        for i in 0..<n {
            let (l, dw, dl) = pairLoss(mine[i], chosen: Double(r[i]), rejected: Double(r[n + i]))
            loss += l
            if r[i] > r[n + i] { correct += 1 }
            dValues[i] = Float(weight * dw / Double(globalCount))
            dValues[n + i] = Float(weight * dl / Double(globalCount))
        }
        headGradients.zero()
        let dLast = FloatBuffer(count: 2 * n * c)
        withExtendedLifetime((last, dLast)) {
            head.backward(dValues: dValues, hidden: last.pointer, dHidden: dLast.pointer, gradients: headGradients)
        }
        headSum.add(headGradients)
        let dHidden = FloatBuffer(count: act.hidden.count)
        for (row, s) in sequences.enumerated() { (dHidden.pointer + (row * length + s.count - 1) * c).update(from: dLast.pointer + row * c, count: c) }
        trunkGradients.zero()
        trunk.backward(dHidden: dHidden, activations: act, trunkGradients: trunkGradients)
        trunkSum.add(trunkGradients)
        return (loss, correct)
    }

    /// Share of held-out pairs whose chosen response scores higher.
    func evalAccuracy(trunk: GPT2Trunk) throws -> Double? {
        guard !evalPairs.isEmpty else { return nil }
        var correct = 0
        for start in stride(from: 0, to: evalPairs.count, by: 32) {
            let chunk = Array(evalPairs[start..<min(start + 32, evalPairs.count)])
            let r = try scores(trunk: trunk, chunk.map(\.chosen) + chunk.map(\.rejected)).values
            for i in chunk.indices where r[i] > r[chunk.count + i] { correct += 1 }
        }
        return Double(correct) / Double(evalPairs.count)
    }
}
