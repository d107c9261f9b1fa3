/// The sizes a config.json claims, checked against the shapes the weights file itself holds before
/// any size is multiplied or any layout built: a config.json claiming `n_layer: 1e9` or
/// `n_embd: 1e9` beside a small file is refused by name instead of growing a layout of a billion
/// layers or trapping on an overflow (issue 29, point 7).
enum ShapeClaims {
    /// `claimed` against the file's `shape` of `tensor`; an error names both.
    static func check(_ tensor: String, shape: [Int]?, claimed: [Int], keys: String, path: String) throws {
        guard let shape else {
            throw ModelError.checkpoint(path: path, reason: "missing tensor '\(tensor)'")
        }
        guard shape == claimed else {
            throw ModelError.checkpoint(
                path: path,
                reason: "config.json's \(keys) \(claimed) differ from '\(tensor)' of shape \(shape) in the weights file"
            )
        }
    }

    /// The number of layers the file holds: distinct N in names "<prefix>N.".
    static func layerCount(_ names: some Sequence<String>, prefix: String) -> Int {
        var layers = Set<Int>()
        for name in names {
            guard let range = name.range(of: prefix) else { continue }
            let digits = name[range.upperBound...].prefix { $0.isNumber }
            if let n = Int(digits), name[range.upperBound...].dropFirst(digits.count).first == "." { layers.insert(n) }
        }
        return layers.count
    }

    static func checkLayers(_ names: some Sequence<String>, prefix: String, claimed: Int, key: String, path: String)
        throws
    {
        let found = layerCount(names, prefix: prefix)
        guard found == claimed else {
            throw ModelError.checkpoint(
                path: path,
                reason: "config.json's \(key) \(claimed) differs from the \(found) layers in the weights file")
        }
    }

    /// a × b, or an error naming `what` when it does not fit an Int.
    static func product(_ a: Int, _ b: Int, _ what: String, path: String) throws -> Int {
        let (p, overflow) = a.multipliedReportingOverflow(by: b)
        guard !overflow else { throw ModelError.checkpoint(path: path, reason: "config.json's \(what) overflows") }
        return p
    }
}

extension GPT2Config {
    /// n_embd, vocab_size, n_positions and n_layer against the file's wte, wpe and h.N tensors.
    func checkClaims(against entries: [String: SafeTensorsEntry], path: String) throws {
        func shape(_ local: String) -> [Int]? { (entries[local] ?? entries["transformer." + local])?.shape }
        try ShapeClaims.check(
            "wte.weight", shape: shape("wte.weight"), claimed: [vocabSize, channels], keys: "vocab_size × n_embd",
            path: path)
        try ShapeClaims.check(
            "wpe.weight", shape: shape("wpe.weight"), claimed: [contextLength, channels], keys: "n_positions × n_embd",
            path: path)
        try ShapeClaims.checkLayers(entries.keys, prefix: "h.", claimed: layers, key: "n_layer", path: path)
        try ShapeClaims.check(
            "h.0.mlp.c_fc.weight", shape: shape("h.0.mlp.c_fc.weight"), claimed: [channels, innerSize],
            keys: "n_embd × n_inner", path: path)
    }
}

extension LlamaConfig {
    /// hidden_size, vocab_size, num_hidden_layers, intermediate_size and the heads against the file's
    /// embed_tokens, layers.N, up_proj and q/k projections.
    func checkClaims(against names: [String: [Int]], path: String) throws {
        func shape(_ local: String) -> [Int]? { names[local] ?? names["model." + local] }
        try ShapeClaims.check(
            "embed_tokens.weight", shape: shape("embed_tokens.weight"), claimed: [vocabSize, channels],
            keys: "vocab_size × hidden_size", path: path)
        try ShapeClaims.checkLayers(
            names.keys, prefix: "layers.", claimed: layers, key: "num_hidden_layers", path: path)
        try ShapeClaims.check(
            "layers.0.mlp.up_proj.weight", shape: shape("layers.0.mlp.up_proj.weight"), claimed: [innerSize, channels],
            keys: "intermediate_size × hidden_size", path: path)
        let q = try ShapeClaims.product(heads, headSize, "num_attention_heads × head_dim", path: path)
        let kv = try ShapeClaims.product(kvHeads, headSize, "num_key_value_heads × head_dim", path: path)
        try ShapeClaims.check(
            "layers.0.self_attn.q_proj.weight", shape: shape("layers.0.self_attn.q_proj.weight"),
            claimed: [q, channels],
            keys: "heads × head_dim, hidden_size", path: path)
        try ShapeClaims.check(
            "layers.0.self_attn.k_proj.weight", shape: shape("layers.0.self_attn.k_proj.weight"),
            claimed: [kv, channels], keys: "key/value heads × head_dim, hidden_size", path: path)
    }
}
