import Alignment
import Cluster
import Foundation
import Roles

/// What the update needs of every sequence of the iteration, from every rank rolling out, in the
/// global batch's order (rank 0's sequences first). Every rank holds all of it, so advantages,
/// whitening, the KL controller and the minibatches are computed from the same numbers in the
/// same order at any number of ranks, and each rank trains on its share of every minibatch
/// whichever rank sampled it (docs/architecture.md §8).
struct GlobalBatch: Equatable {
    var sequences: [[Int32]] = []  // [N] prompt + response
    var promptLengths: [Int] = []  // [N]
    var oldLogProbs: [[Float]] = []  // [N][A_i] response positions
    var oldValues: [[Float]] = []  // [N][A_i] (GAE), else []
    var scores: [Double] = []  // [N] the sequence reward after EOS penalty and clip
    var gold: [Double] = []  // [N]
    var klTokens: [[Double]] = []  // [N][A_i]
    var endedWithEOS: [Bool] = []  // [N]

    var count: Int { sequences.count }
    func responseLength(_ i: Int) -> Int { sequences[i].count - promptLengths[i] }

    /// This rank's own part.
    init(_ r: Rollout, _ s: ScoredRollout) {
        sequences = r.sequences
        promptLengths = r.promptLengths
        oldLogProbs = s.oldLogProbs
        oldValues = s.oldValues
        scores = s.scores
        gold = s.gold
        klTokens = s.klTokens
        endedWithEOS = r.endedWithEOS
    }

    init() {}

    /// Every rank's part, in rank order (this rank's alone without `replicas`).
    static func gather(_ r: Rollout, _ s: ScoredRollout, over replicas: (any Transport)?) async throws -> GlobalBatch {
        let mine = GlobalBatch(r, s)
        guard let replicas, replicas.size > 1 else { return mine }
        var all = GlobalBatch()
        for part in try await replicas.allGather(mine.encoded()) { all.append(try GlobalBatch(decoding: part)) }
        return all
    }

    mutating func append(_ other: GlobalBatch) {
        sequences += other.sequences
        promptLengths += other.promptLengths
        oldLogProbs += other.oldLogProbs
        oldValues += other.oldValues
        scores += other.scores
        gold += other.gold
        klTokens += other.klTokens
        endedWithEOS += other.endedWithEOS
    }

    func encoded() -> Data {
        var w = WireWriter()
        w.sequences(sequences)
        w.int(promptLengths.count)
        for n in promptLengths { w.int(n) }
        w.floatRows(oldLogProbs)
        w.floatRows(oldValues)
        for row in [scores, gold] + [klTokens.flatMap { $0 }] {
            w.int(row.count)
            for x in row { w.uint64(x.bitPattern) }
        }
        for e in endedWithEOS { w.bool(e) }
        return w.data
    }

    init(decoding data: Data) throws {
        var r = try WireReader(data)
        sequences = try r.sequences()
        promptLengths = try (0..<(try r.count(elementSize: 8))).map { _ in try r.int() }
        oldLogProbs = try r.floatRows()
        oldValues = try r.floatRows()
        func doubles() throws -> [Double] {
            try (0..<(try r.count(elementSize: 8))).map { _ in Double(bitPattern: try r.uint64()) }
        }
        (scores, gold) = (try doubles(), try doubles())
        let kl = try doubles()
        endedWithEOS = try sequences.indices.map { _ in try r.bool() }
        let n = sequences.count
        guard promptLengths.count == n, oldLogProbs.count == n, scores.count == n, gold.count == n,
            oldValues.isEmpty || oldValues.count == n, r.isAtEnd
        else { throw TransportError("a rank's rollout record does not cover its \(n) sequences") }
        var start = 0
        for i in sequences.indices {
            let a = sequences[i].count - promptLengths[i]
            guard promptLengths[i] >= 0, a >= 0, start + a <= kl.count, oldLogProbs[i].count == a,
                oldValues.isEmpty || oldValues[i].count == a
            else { throw TransportError("a rank's rollout record of sequence \(i) does not match its response") }
            klTokens.append(Array(kl[start..<(start + a)]))
            start += a
        }
        guard start == kl.count else {
            throw TransportError("a rank's KL rows hold \(kl.count - start) values too many")
        }
    }
}

/// One optimizer step of the update: which global sequences it trains on, which of them this
/// rank computes (its micro-batches), and the response tokens of all of them (the token mean's
/// count, the same on every rank).
struct UpdateStep {
    let mine: [Int]
    /// The step's sequences over every rank.
    let members: [Int]
    /// Sequences of the step over every rank, and their response tokens.
    let size: Int, tokens: Int
    let microBatch: Int

    /// The steps of one epoch: `order` (a shuffle of the global batch) cut into minibatches of
    /// `minibatch`, each cut into micro-batches of `microBatch` dealt to the ranks in turn.
    static func epoch(
        order: [Int], minibatch: Int, microBatch: Int, rank: Int, ranks: Int, responseLength: (Int) -> Int
    ) -> [UpdateStep] {
        stride(from: 0, to: order.count, by: minibatch).map { start in
            let step = Array(order[start..<min(start + minibatch, order.count)])
            let micro = stride(from: 0, to: step.count, by: microBatch).map {
                Array(step[$0..<min($0 + microBatch, step.count)])
            }
            let mine = micro.indices.filter { $0 % ranks == rank }.flatMap { micro[$0] }
            return UpdateStep(
                mine: mine, members: step, size: step.count, tokens: step.map(responseLength).reduce(0, +),
                microBatch: microBatch)
        }
    }

    var shape: StepShape { StepShape(microBatch: microBatch, tokens: tokens) }
}
