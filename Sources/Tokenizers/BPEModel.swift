import Foundation

/// tokenizer.json's BPE model (Sennrich et al. 2016) as Hugging Face tokenizers runs it on one
/// pre-token: its Unicode scalars looked up one by one (with the continuing-subword prefix and
/// end-of-word suffix when set; `""` is the same as unset), scalars missing from the vocabulary
/// replaced by their `<0xXX>` byte tokens (byte_fallback), by the unknown token (fused when
/// fuse_unk), or dropped when the model has neither; then adjacent pairs merged by rank.
final class BPEModel: @unchecked Sendable {
    /// Tokens are compared by their exact scalars: Swift's String equality is canonical
    /// equivalence ("e\u{301}" == "é"), which tokenizers' Rust strings do not have.
    typealias Key = [UInt8]
    struct Pair: Hashable { let left: Key, right: Key }

    let vocab: [Key: Int32]
    let mergeRanks: [Pair: Int]
    let unkId: Int32?
    let fuseUnk: Bool, byteFallback: Bool, ignoreMerges: Bool
    let prefix: String, suffix: String
    private let cache = WordCache()

    /// `exactVocab`: model.vocab read with exact keys (a dictionary through Foundation would merge
    /// canonically equivalent tokens such as "à" and "a\u{300}", which vocabularies may hold both of).
    init(_ model: [String: Any], exactVocab: [(key: [UInt8], id: Int)], fail: (String) -> TokenizerError) throws {
        guard (model["type"] as? String) == "BPE" else {
            throw fail("model.type '\(model["type"] ?? "none")' is not supported (only BPE)")
        }
        if let dropout = model["dropout"] as? Double, dropout > 0 {
            throw fail("model.dropout \(dropout) is not supported (deterministic encoding only)")
        }
        var exact: [Key: Int32] = [:]
        for (token, id) in exactVocab {
            guard let id32 = Int32(exactly: id), id32 >= 0, id32 < Int32.max else {
                throw fail("model.vocab: id \(id) of '\(String(decoding: token, as: UTF8.self))' is not in 0..<2³¹−1")
            }
            exact[token] = id32
        }
        vocab = exact
        prefix = model["continuing_subword_prefix"] as? String ?? ""
        suffix = model["end_of_word_suffix"] as? String ?? ""
        let prefixKey = Array(prefix.utf8)
        var ranks: [Pair: Int] = [:]
        for (rank, merge) in ((model["merges"] as? [Any]) ?? []).enumerated() {
            // Two formats: "a b" (tokenizers < 0.20) and ["a", "b"].
            let pair: Pair
            if let s = merge as? String {
                // By scalars: " " before a combining mark is one Character in Swift.
                let parts = s.unicodeScalars.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw fail("merge \(rank) '\(s)' is not two symbols") }
                pair = Pair(
                    left: Array(String(String.UnicodeScalarView(parts[0])).utf8),
                    right: Array(String(String.UnicodeScalarView(parts[1])).utf8))
            } else if let a = merge as? [String], a.count == 2 {
                pair = Pair(left: Array(a[0].utf8), right: Array(a[1].utf8))
            } else {
                throw fail("merge \(rank) is neither \"a b\" nor [a, b]")
            }
            for token in [pair.left, pair.right, Self.merged(pair, prefix: prefixKey)] where exact[token] == nil {
                throw fail(
                    "merge \(rank) (\(String(decoding: pair.left, as: UTF8.self)) "
                        + "\(String(decoding: pair.right, as: UTF8.self))) uses "
                        + "'\(String(decoding: token, as: UTF8.self))', which is not in the vocabulary"
                )
            }
            if ranks[pair] == nil { ranks[pair] = rank }
        }
        mergeRanks = ranks
        if let unk = model["unk_token"] as? String {
            guard let id = exact[Array(unk.utf8)] else {
                throw fail("model.unk_token '\(unk)' is not in the vocabulary")
            }
            unkId = id
        } else {
            unkId = nil
        }
        fuseUnk = model["fuse_unk"] as? Bool ?? false
        byteFallback = model["byte_fallback"] as? Bool ?? false
        ignoreMerges = model["ignore_merges"] as? Bool ?? false
    }

    /// The token two symbols merge into (the right one loses the continuing-subword prefix).
    static func merged(_ pair: Pair, prefix: Key) -> Key {
        pair.left
            + (prefix.isEmpty || !pair.right.starts(with: prefix)
                ? pair.right : Array(pair.right.dropFirst(prefix.count)))
    }

    func encode(_ word: String) -> [Int32] {
        if let hit = cache.get(word) { return hit }
        if ignoreMerges, let id = vocab[Array(word.utf8)] {
            cache.set(word, [id])
            return [id]
        }
        // Symbols: (token bytes, or nil for a fixed id, id).
        var symbols: [(token: Key?, id: Int32)] = []
        var unk: Int32?  // an unknown run waiting to be added
        let scalars = Array(word.unicodeScalars)
        for (i, scalar) in scalars.enumerated() {
            var text = String(scalar)
            if i > 0 { text = prefix + text }
            if i == scalars.count - 1 { text += suffix }
            let s = Array(text.utf8)
            if let id = vocab[s] {
                if let u = unk {
                    symbols.append((nil, u))
                    unk = nil
                }
                symbols.append((s, id))
                continue
            }
            if byteFallback {
                let bytes = s.map { vocab[Array(String(format: "<0x%02X>", $0).utf8)] }
                if bytes.allSatisfy({ $0 != nil }) {
                    if let u = unk {
                        symbols.append((nil, u))
                        unk = nil
                    }
                    symbols.append(contentsOf: bytes.map { (nil, $0!) })
                    continue
                }
            }
            if let unkId {
                if let u = unk, !fuseUnk { symbols.append((nil, u)) }
                unk = unkId
            }
        }
        if let u = unk { symbols.append((nil, u)) }
        let ids = merge(symbols)
        cache.set(word, ids)
        return ids
    }

    /// Merges adjacent pairs lowest rank first, leftmost first among equal ranks (tokenizers'
    /// Word::merge_all): a heap of candidate pairs over a linked list of symbols, so a long word
    /// (a SentencePiece-style segment is one) costs n log n rather than n per merge.
    func merge(_ initial: [(token: Key?, id: Int32)]) -> [Int32] {
        var symbols = initial
        let n = symbols.count
        guard n > 1 else { return symbols.map(\.id) }
        var previous = Array(-1..<(n - 1)), next = Array(1...n)
        next[n - 1] = -1
        var alive = [Bool](repeating: true, count: n)
        var heap = MergeHeap()
        func push(_ left: Int) {
            let right = next[left]
            guard right >= 0, let l = symbols[left].token, let r = symbols[right].token,
                let rank = mergeRanks[Pair(left: l, right: r)]
            else { return }
            heap.push(MergeCandidate(rank: rank, left: left, right: right, leftToken: l, rightToken: r))
        }
        for k in 0..<(n - 1) { push(k) }
        let prefixKey = Array(prefix.utf8)
        while let c = heap.pop() {
            // Stale when either symbol has merged since the candidate was pushed.
            guard alive[c.left], alive[c.right], next[c.left] == c.right, symbols[c.left].token == c.leftToken,
                symbols[c.right].token == c.rightToken
            else { continue }
            let token = Self.merged(Pair(left: c.leftToken, right: c.rightToken), prefix: prefixKey)
            symbols[c.left] = (token, vocab[token]!)
            alive[c.right] = false
            next[c.left] = next[c.right]
            if next[c.left] >= 0 { previous[next[c.left]] = c.left }
            if previous[c.left] >= 0 { push(previous[c.left]) }
            push(c.left)
        }
        return (0..<n).filter { alive[$0] }.map { symbols[$0].id }
    }
}

/// A pair that may merge: its rank, the positions of its two symbols and their tokens then.
struct MergeCandidate {
    let rank: Int, left: Int, right: Int
    let leftToken: BPEModel.Key, rightToken: BPEModel.Key
    /// Lower rank first; among equal ranks the leftmost.
    func precedes(_ other: MergeCandidate) -> Bool { rank != other.rank ? rank < other.rank : left < other.left }
}

/// A binary min-heap of merge candidates.
struct MergeHeap {
    private var items: [MergeCandidate] = []
    mutating func push(_ c: MergeCandidate) {
        items.append(c)
        var k = items.count - 1
        while k > 0 {
            let parent = (k - 1) / 2
            guard items[k].precedes(items[parent]) else { break }
            items.swapAt(k, parent)
            k = parent
        }
    }
    mutating func pop() -> MergeCandidate? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var k = 0
            while true {
                let l = 2 * k + 1, r = l + 1
                var best = k
                if l < items.count && items[l].precedes(items[best]) { best = l }
                if r < items.count && items[r].precedes(items[best]) { best = r }
                if best == k { break }
                items.swapAt(k, best)
                k = best
            }
        }
        return top
    }
}

/// Pre-token → ids memo; encoding repeats the same words constantly.
final class WordCache: @unchecked Sendable {
    private var table: [[UInt8]: [Int32]] = [:]  // by exact bytes (see BPEModel.Key)
    private let lock = NSLock()
    func get(_ word: String) -> [Int32]? {
        lock.lock()
        defer { lock.unlock() }
        return table[Array(word.utf8)]
    }
    func set(_ word: String, _ ids: [Int32]) {
        lock.lock()
        defer { lock.unlock() }
        if table.count > 100_000 { table.removeAll(keepingCapacity: true) }
        table[Array(word.utf8)] = ids
    }
}
