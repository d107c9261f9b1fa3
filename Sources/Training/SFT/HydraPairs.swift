import Alignment
import Cluster
import Datasets
import Foundation
import Kernels
import Models
import Tokenizers

/// The reward half of Hydra-SFT (docs/algorithms.md §1.3): L = L_LM + w · L_BT, with
/// L_BT = −log σ(r(x, y_w) − r(x, y_l)) read by a scalar head at each sequence's last token,
/// on the same trunk as the LM. Pairs stream epoch by epoch like the demonstrations.
final class HydraPairs {
    /// One prompt's responses ranked best first (a pair when K = 2), each [BOS] x y [EOS].
    struct Pair {
        let ranked: [[Int32]]
        let margin: Double, openEnded: Bool
        var chosen: [Int32] { ranked[0] }
        var rejected: [Int32] { ranked[ranked.count - 1] }
        /// The C(K, 2) ordered (better, worse) index pairs.
        var orderedPairs: [(Int, Int)] { (0..<ranked.count).flatMap { i in ((i + 1)..<ranked.count).map { (i, $0) } } }
    }
    let pairs: [Pair]
    let evalPairs: [Pair]
    let weight: Double
    let batchSize: Int
    let seed: UInt64
    let head: ScalarHead
    let headGradients: FloatBuffer, headSum: GradientSum
    let optimizer: AdamW
    let utility: PairUtility
    let centerCoefficient: Double
    /// rm with LoRA: the trunk stays frozen and the "trunk gradients" are the adapter's.
    let adapter: LoRAAdapter?
    /// false: only the head trains (no backward through the trunk).
    var trainTrunk = true

    /// The pair loss and its derivatives with respect to r_w and r_l (docs/algorithms.md §3).
    func pairLoss(_ p: Pair, chosen rw: Double, rejected rl: Double, margin: Double) -> (Double, Double, Double) {
        var (l, dw, dl): (Double, Double, Double)
        if let u = utility.rankUtility(openEnded: p.openEnded) {
            (l, dw, dl) = u.pairLoss(positive: rw, negative: rl)
        } else {
            (l, dw, dl) = BradleyTerry.loss(chosen: rw, rejected: rl, margin: margin)
        }
        if centerCoefficient > 0 {  // c·(r_w + r_l)² pulls the mean reward to 0 (Eisenstein et al.)
            let s = rw + rl
            l += centerCoefficient * s * s
            dw += 2 * centerCoefficient * s
            dl += 2 * centerCoefficient * s
        }
        return (l, dw, dl)
    }

    static func sequence(_ prompt: String, _ response: String, tokenizer: any Tokenizer, maxLength: Int, source: String)
        throws -> [Int32]
    {
        let s =
            tokenizer.encodeWithPrefix(prompt) + tokenizer.encode(response) + (tokenizer.eosTokenId.map { [$0] } ?? [])
        guard s.count <= maxLength + 1 else {
            throw TooLongExample(source: source, tokens: s.count - 1, maxLength: maxLength)
        }
        return s
    }

    init(
        train: [PreferenceExample], eval: [PreferenceExample], tokenizer: any Tokenizer, maxLength: Int, weight: Double,
        batchSize: Int, seed: UInt64, head: ScalarHead, hyper: AdamWHyperparameters, utility: PairUtility = .bt,
        centerCoefficient: Double = 0,
        adapter: LoRAAdapter? = nil
    ) throws {
        self.utility = utility
        self.centerCoefficient = centerCoefficient
        self.adapter = adapter
        func tokenize(_ e: PreferenceExample) throws -> Pair {
            Pair(
                ranked: try e.responses.map {
                    try Self.sequence(e.prompt, $0, tokenizer: tokenizer, maxLength: maxLength, source: e.source)
                },
                margin: e.margin ?? 0, openEnded: e.openEnded ?? false)
        }
        guard !train.isEmpty else { throw DatasetError("Hydra-SFT needs preference pairs (data.prefs or a task)") }
        pairs = try train.map(tokenize)
        evalPairs = try eval.map(tokenize)
        self.weight = weight
        self.batchSize = batchSize
        self.seed = seed
        self.head = head
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
    func scores(trunk: any CausalLM, _ sequences: [[Int32]]) throws -> (
        values: [Float], act: TrunkActivations, last: FloatBuffer, length: Int
    ) {
        let length = sequences.map(\.count).max()!
        var tokens = [Int32](repeating: 0, count: sequences.count * length)
        for (r, s) in sequences.enumerated() { for (j, t) in s.enumerated() { tokens[r * length + j] = t } }
        let act = trunk.makeActivations(batch: sequences.count, tokens: length, loraRank: adapter?.config.rank ?? 0)
        try trunk.forward(tokens: tokens, adapter: adapter, activations: act)
        let c = trunk.config.channels
        let last = FloatBuffer(count: sequences.count * c)
        for (r, s) in sequences.enumerated() {
            (last.pointer + r * c).update(from: act.hidden.pointer + (r * length + s.count - 1) * c, count: c)
        }
        return (head.forward(hidden: last.pointer, rows: sequences.count), act, last, length)
    }

    /// Forward + backward of w · mean BT loss over this rank's share of the global pair batch,
    /// adding trunk gradients to `trunkSum` and head gradients to `headSum`. Returns (Σ loss, Σ correct).
    /// Pairs go through the model `microBatch` at a time, each chunk's gradients added to the sums
    /// on its own: chunks are the same whatever the number of ranks, so the Float64 sums are too.
    func accumulate(
        trunk: any CausalLM, mine: [Pair], microBatch: Int, globalCount: Int, trunkGradients: FloatBuffer,
        trunkSum: GradientSum
    ) throws -> (Double, Double) {
        var loss = 0.0, correct = 0.0
        for start in stride(from: 0, to: mine.count, by: microBatch) {
            let (l, c) = try accumulateChunk(
                trunk: trunk, mine: Array(mine[start..<min(start + microBatch, mine.count)]), globalCount: globalCount,
                trunkGradients: trunkGradients, trunkSum: trunkSum)
            loss += l
            correct += c
        }
        return (loss, correct)
    }

    func accumulateChunk(
        trunk: any CausalLM, mine: [Pair], globalCount: Int, trunkGradients: FloatBuffer, trunkSum: GradientSum
    ) throws -> (Double, Double) {
        guard !mine.isEmpty else { return (0, 0) }
        let sequences = mine.flatMap(\.ranked)
        let (r, act, last, length) = try scores(trunk: trunk, sequences)
        let c = trunk.config.channels
        var dValues = [Float](repeating: 0, count: sequences.count)
        var loss = 0.0, correct = 0.0
        var first = 0
        // A group's loss is the mean of its pair losses (InstructGPT's K-wise ranking loss for
        // Bradley–Terry); K = 2 is the ordinary pair loss, with its margin.
        for group in mine {
            let pairs = group.orderedPairs, count = Double(pairs.count)
            for (i, j) in pairs {
                let (l, dw, dl) = pairLoss(
                    group, chosen: Double(r[first + i]), rejected: Double(r[first + j]),
                    margin: group.ranked.count == 2 ? group.margin : 0)
                loss += l / count
                if r[first + i] > r[first + j] { correct += 1 / count }
                dValues[first + i] += Float(weight * dw / count / Double(globalCount))
                dValues[first + j] += Float(weight * dl / count / Double(globalCount))
            }
            first += group.ranked.count
        }
        headGradients.zero()
        let dLast = FloatBuffer(count: sequences.count * c)
        withExtendedLifetime((last, dLast)) {
            head.backward(dValues: dValues, hidden: last.pointer, dHidden: dLast.pointer, gradients: headGradients)
        }
        headSum.add(headGradients)
        let dHidden = FloatBuffer(count: act.hidden.count)
        for (row, s) in sequences.enumerated() {
            (dHidden.pointer + (row * length + s.count - 1) * c).update(from: dLast.pointer + row * c, count: c)
        }
        guard trainTrunk || adapter != nil else { return (loss, correct) }  // head only: the trunk stays as it is
        trunkGradients.zero()
        trunk.backward(
            dHidden: dHidden, adapter: adapter, activations: act, trunkGradients: adapter == nil ? trunkGradients : nil,
            adapterGradients: adapter == nil ? nil : trunkGradients)
        trunkSum.add(trunkGradients)
        return (loss, correct)
    }

    /// σ(r) of every held-out response, by prompt class (closed / open-ended): the reward-collapse
    /// paper's histograms (Song et al. 2023, §3.2), and the pairwise accuracy; `training`: of the
    /// training rankings instead (whether the model interpolates them, the paper's regime).
    /// `orderKept`: the share of pairs whose σ(r) is not inverted by more than 0.01 — the order up to
    /// ties, which a saturating utility (x) leaves among responses it pushes to the same end.
    func evaluate(trunk: any CausalLM, training: Bool = false) throws -> (
        accuracy: Double, orderKept: Double, rewards: [String: [Double]]
    )? {
        let set = training ? pairs : evalPairs
        guard !set.isEmpty else { return nil }
        var correct = 0, kept = 0, total = 0
        var rewards: [String: [Double]] = [:]
        for start in stride(from: 0, to: set.count, by: 16) {
            let chunk = Array(set[start..<min(start + 16, set.count)])
            let r = try scores(trunk: trunk, chunk.flatMap(\.ranked)).values
            var first = 0
            for group in chunk {
                for (i, j) in group.orderedPairs {
                    total += 1
                    if r[first + i] > r[first + j] { correct += 1 }
                    let si = 1 / (1 + exp(-Double(r[first + i]))), sj = 1 / (1 + exp(-Double(r[first + j])))
                    if si > sj - 0.01 { kept += 1 }
                }
                rewards[group.openEnded ? "open-ended" : "closed", default: []] += (0..<group.ranked.count).map {
                    1 / (1 + exp(-Double(r[first + $0])))
                }
                first += group.ranked.count
            }
        }
        return (Double(correct) / Double(total), Double(kept) / Double(total), rewards)
    }

    /// Share of held-out ordered pairs the reward head ranks correctly.
    func evalAccuracy(trunk: any CausalLM) throws -> Double? { try evaluate(trunk: trunk)?.accuracy }
}
