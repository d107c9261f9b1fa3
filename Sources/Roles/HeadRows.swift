import Kernels
import Models

/// The positions of a padded batch [B·T] whose log-probs an objective reads (PPO: the response
/// tokens; PPO-ptx: the weighted ones), their final hidden states gathered [R, C] so the LM head
/// runs over those rows only: not over prompts and padding, whose logits [·, V] no loss reads.
struct HeadRows {
    let rows: [Int]  // ascending indices into [B·T]
    let hidden: FloatBuffer  // [R, C]
    let channels: Int

    init(_ rows: [Int], of all: FloatBuffer, channels C: Int) {
        self.rows = rows
        channels = C
        hidden = FloatBuffer(count: rows.count * C)
        for (k, row) in rows.enumerated() { (hidden.pointer + k * C).update(from: all.pointer + row * C, count: C) }
    }

    /// Every sequence's log-prob rows of a padded batch (positions 0 ..< count − 1 of each; not the
    /// padding), gathered from `all` [B·T, C].
    init(targetsOf sequences: [[Int32]], length: Int, of all: FloatBuffer, channels C: Int) {
        self.init(
            sequences.enumerated().flatMap { r, s in (0..<(s.count - 1)).map { r * length + $0 } }, of: all, channels: C
        )
    }

    /// The LM head's log-probs (on logits/τ) of the gathered rows' targets (from the padded
    /// batch's [B·T]), cut back into one row per sequence (the rows of `init(targetsOf:)`).
    func logProbs(_ trunk: any CausalLM, sequences: [[Int32]], targets: [Int32], temperature: Float = 1) -> [[Float]] {
        let flat = trunk.lmHeadLogProbs(
            hidden: hidden, targets: rows.map { targets[$0] }, temperature: temperature,
            cache: LMHeadCache(rows: rows.count, vocab: trunk.config.vocabSize))
        var start = 0
        return sequences.map { s in
            defer { start += s.count - 1 }
            return Array(flat[start..<(start + s.count - 1)])
        }
    }

    /// [R] values of the gathered rows → [count] with zeros elsewhere.
    func expand(_ values: [Float], count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        for (k, row) in rows.enumerated() { out[row] = values[k] }
        return out
    }

    /// [count] → the gathered rows' [R].
    func gather(_ values: [Float]) -> [Float] { rows.map { values[$0] } }

    /// out [B·T, C] = d [R, C] at the gathered rows, 0 elsewhere (out starts at zero).
    func scatter(_ d: FloatBuffer, into out: FloatBuffer) {
        let C = channels
        for (k, row) in rows.enumerated() { (out.pointer + row * C).update(from: d.pointer + k * C, count: C) }
    }
}

extension PolicyObjective {
    /// The positions of the padded batch [B·T] (`length` T) whose log-probs the objective reads, ascending.
    func rowsRead(_ sequences: [[Int32]], length: Int) throws -> [Int] {
        switch self {
        case .weightedLogLikelihood(let weights):
            try LocalPolicy.checkWeights(weights, sequences: sequences)
            return weights.enumerated().flatMap { r, w in w.indices.filter { w[$0] != 0 }.map { r * length + $0 } }
        case .ppo(let targets):
            return try targets.responsePositions(sequences).map { $0.row * length + $0.position }
        }
    }
}
