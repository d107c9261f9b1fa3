import Alignment
import Config
import Datasets
import Foundation
import Models
import Roles
import Tokenizers

/// R2M's own check (Huang et al. 2026 §6: the reward model's accuracy on held-out preference
/// pairs, 72.3 → 77.4): gold-labelled pairs (r2m.heldout_pairs) scored by the fused reward with the
/// current policy's states. The reward model's side (proxy 1's state at the reward token) is frozen
/// and read once; the policy's states are taken again at every measurement.
package struct R2MHeldOutPairs {
    /// [2P] [BOS] x y_w [EOS], [BOS] x y_l [EOS], … (chosen first), as the rm stage tokenises pairs.
    package let sequences: [[Int32]]
    /// [2P][C] proxy 1's last-layer state at each sequence's last token.
    package let rewardStates: [[Float]]

    package var pairs: Int { sequences.count / 2 }

    /// Reads and tokenises the pairs and takes proxy 1's states; any failure names the key and file.
    package static func load(path: String, tokenizer: any Tokenizer, learned: LearnedRewards, scorer: HydraScorer)
        async throws -> R2MHeldOutPairs
    {
        let examples: [PreferenceExample]
        do { examples = try JSONL.preferences(path: path, chat: tokenizer.chat) } catch {
            throw ConfigError("'r2m.heldout_pairs': \(error)")
        }
        let eos = tokenizer.eosTokenId.map { [$0] } ?? []
        var sequences: [[Int32]] = []
        for e in examples {
            let prompt = e.chatRendered ? tokenizer.encode(e.prompt) : tokenizer.encodeWithPrefix(e.prompt)
            sequences += [e.chosen, e.rejected].map { prompt + tokenizer.encode($0) + eos }
        }
        do {
            let (_, shared) = try await scorer.referenceAndLastHidden(sequences)
            let states = try learned.proxyStates(sequences, shared: shared)
            return R2MHeldOutPairs(sequences: sequences, rewardStates: states.first ?? shared)
        } catch { throw ConfigError("'r2m.heldout_pairs' \(path): \(error)") }
    }

    /// The share of pairs whose chosen response the fused reward scores higher (a tie counts half);
    /// `policyStates` [2P][(S−1)·C] the attended states of each sequence.
    package func accuracy(_ fusion: R2MFusion, policyStates: [[Float]], omega: Double) -> Double {
        let rewards = sequences.indices.map {
            fusion.forward(rewardHidden: rewardStates[$0], policyHidden: policyStates[$0], omega: omega).reward
        }
        var right = 0.0
        for p in 0..<pairs {
            let (w, l) = (rewards[2 * p], rewards[2 * p + 1])
            right += w > l ? 1 : w == l ? 0.5 : 0
        }
        return pairs > 0 ? right / Double(pairs) : 0
    }
}
