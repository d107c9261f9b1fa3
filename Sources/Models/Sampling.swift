import Kernels

#if canImport(Glibc)
    import Glibc
#endif

/// How the next token is chosen. Order of operations follows Hugging Face `generate`:
/// temperature, then top-k, then top-p (nucleus, Holtzman et al. 2020), then a draw.
public struct SamplingOptions: Sendable, Equatable, Codable {
    /// 0 means greedy (argmax); otherwise logits are divided by it.
    public var temperature: Float
    /// Keep the k most likely tokens; 0 disables.
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose probability reaches p; 1 disables.
    public var topP: Float
    public var maxNewTokens: Int
    /// Generation of a sequence stops after it emits this id (the id is kept in the output).
    public var eosTokenId: Int32?
    /// Other ids that end a sequence the same way: a chat model's end of turn (generation_config.json's
    /// eos_token_id list, a GGUF's tokenizer.ggml.eot_token_id; `Tokenizer.stopTokenIds`).
    public var stopTokenIds: [Int32] = []
    public var seed: UInt64

    public init(
        temperature: Float = 1, topK: Int = 0, topP: Float = 1, maxNewTokens: Int = 32,
        eosTokenId: Int32? = nil, stopTokenIds: [Int32] = [], seed: UInt64 = 0
    ) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.maxNewTokens = maxNewTokens
        self.eosTokenId = eosTokenId
        self.stopTokenIds = stopTokenIds
        self.seed = seed
    }

    public static func greedy(maxNewTokens: Int, eosTokenId: Int32? = nil, stopTokenIds: [Int32] = [])
        -> SamplingOptions
    {
        SamplingOptions(temperature: 0, maxNewTokens: maxNewTokens, eosTokenId: eosTokenId, stopTokenIds: stopTokenIds)
    }

    /// Whether `token` ends its sequence.
    func ends(with token: Int32) -> Bool { token == eosTokenId || stopTokenIds.contains(token) }

    public func validate() throws {
        guard temperature >= 0, temperature.isFinite else {
            throw ModelError.input("sampling: temperature must be ≥ 0, got \(temperature)")
        }
        guard topK >= 0 else { throw ModelError.input("sampling: top_k must be ≥ 0, got \(topK)") }
        guard topP > 0, topP <= 1 else { throw ModelError.input("sampling: top_p must be in (0, 1], got \(topP)") }
        guard maxNewTokens >= 0 else {
            throw ModelError.input("sampling: max_new_tokens must be ≥ 0, got \(maxNewTokens)")
        }
    }
}

/// Picks one token from a row of logits [V] and returns it with its log-probability under
/// softmax(logits/τ) (τ = 1 for greedy): the unfiltered distribution, which is what PPO's
/// ratio needs (docs/algorithms.md §2: log-probs on logits/τ). `scratch` holds V floats.
func sampleToken(
    logits: UnsafePointer<Float>, vocab v: Int, options o: SamplingOptions,
    rng: inout RNG, scratch: UnsafeMutablePointer<Float>
) -> (token: Int32, logProb: Float) {
    let invT: Float = o.temperature == 0 ? 1 : 1 / o.temperature
    let maxLogit = vectorMax(logits, v)
    // scratch = exp((l − max)/τ): unnormalised probabilities.
    for j in 0..<v { scratch[j] = fastExp((logits[j] - maxLogit) * invT) }
    let total = vectorSum(scratch, v)
    let logTotal = logf(total)
    func logProb(_ j: Int) -> Float { (logits[j] - maxLogit) * invT - logTotal }

    if o.temperature == 0 {
        var best = 0
        for j in 1..<v where logits[j] > logits[best] { best = j }
        return (Int32(best), logProb(best))
    }
    if o.topK == 0 && o.topP >= 1 {
        let u = rng.uniform() * total
        var cumulative: Float = 0
        for j in 0..<v {
            cumulative += scratch[j]
            if u < cumulative { return (Int32(j), logProb(j)) }
        }
        // Rounding can leave u ≥ the running sum: take the last token with mass.
        var last = v - 1
        while last > 0 && scratch[last] == 0 { last -= 1 }
        return (Int32(last), logProb(last))
    }
    // Candidates by probability, descending; ties by index so the order is deterministic.
    var order = Array(0..<v)
    order.sort { scratch[$0] != scratch[$1] ? scratch[$0] > scratch[$1] : $0 < $1 }
    var keep = o.topK > 0 ? min(o.topK, v) : v
    if o.topP < 1 {
        var mass: Float = 0
        for j in 0..<v { mass += scratch[order[j]] }
        var before: Float = 0
        var n = 0
        // Keep a token while the mass before it is below p (always keeps the first).
        while n < keep && before < o.topP * mass {
            before += scratch[order[n]]
            n += 1
        }
        keep = max(n, 1)
    }
    var kept: Float = 0
    for j in 0..<keep { kept += scratch[order[j]] }
    let u = rng.uniform() * kept
    var cumulative: Float = 0
    for j in 0..<keep {
        cumulative += scratch[order[j]]
        if u < cumulative { return (Int32(order[j]), logProb(order[j])) }
    }
    return (Int32(order[keep - 1]), logProb(order[keep - 1]))
}
