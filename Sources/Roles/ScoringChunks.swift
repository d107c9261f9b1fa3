import Foundation
import Models

/// The scoring passes of RL (reference and old log-probs, values, rewards) over a whole rollout,
/// in consecutive chunks of sequences whose inference buffers and LM-head logits fit a fixed
/// budget. Unchunked, a rollout of 512 responses × 80 tokens at a 49k vocabulary needs 8 GB of
/// logits alone; chunked, the scoring memory does not grow with the rollout (issue 13, point 6).
/// Rows are independent in every kernel, so chunking does not change a single bit of the result.
public enum ScoringChunks {
    /// What one chunk may hold: one layer's inference buffers and the LM head's logits.
    public static let budgetBytes = 256.0 * 1_048_576

    /// Bytes a chunk of `batch` sequences padded to `tokens` needs: the inference forward's
    /// buffers and an `LMHeadCache` (logits [B·T, V], log-sum-exp and targets [B·T], scratch [V]).
    public static func bytes(_ c: any ModelConfiguration, batch: Int, tokens: Int, loraRank: Int) -> Double {
        let rows = Double(batch * tokens)
        return c.inferenceActivationBytes(batch: batch, tokens: tokens, loraRank: loraRank) + 4
            * (rows * Double(c.vocabSize + 2) + Double(c.vocabSize))
    }

    /// Sequences of `tokens` tokens per chunk within the budget (at least one).
    public static func sequencesPerChunk(
        _ c: any ModelConfiguration, tokens: Int, loraRank: Int, budget: Double = budgetBytes
    ) -> Int {
        var n = 1
        while bytes(c, batch: n + 1, tokens: tokens, loraRank: loraRank) <= budget { n += 1 }
        return n
    }

    /// Consecutive ranges of `sequences`; each chunk, padded to its longest sequence, fits the budget.
    public static func ranges(
        _ lengths: [Int], config c: any ModelConfiguration, loraRank: Int, budget: Double = budgetBytes
    ) -> [Range<Int>] {
        var out: [Range<Int>] = [], start = 0, longest = 0
        for (i, length) in lengths.enumerated() {
            let padded = max(longest, length)
            if i > start && bytes(c, batch: i - start + 1, tokens: padded, loraRank: loraRank) > budget {
                out.append(start..<i)
                start = i
                longest = length
            } else {
                longest = padded
            }
        }
        if start < lengths.count { out.append(start..<lengths.count) }
        return out
    }

    /// `body` over each chunk, its per-sequence results concatenated in order. Every sequence is
    /// checked first, so an error names its index in the whole rollout.
    static func map<T>(
        _ sequences: [[Int32]], config c: any ModelConfiguration, loraRank: Int, budget: Double = budgetBytes,
        _ body: ([[Int32]]) throws -> [T]
    ) throws -> [T] {
        guard !sequences.isEmpty else { throw RoleError("empty batch") }
        for (i, s) in sequences.enumerated() where s.isEmpty || s.count > c.contextLength {
            throw RoleError("sequence \(i) has \(s.count) tokens; it must have 1…\(c.contextLength)")
        }
        var out: [T] = []
        out.reserveCapacity(sequences.count)
        for r in ranges(sequences.map(\.count), config: c, loraRank: loraRank, budget: budget) {
            out += try body(Array(sequences[r]))
        }
        return out
    }
}
