/// Errors of model configuration, checkpoints and inputs; each names what is wrong and where.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case invalidConfig(String)
    case checkpoint(path: String, reason: String)
    case input(String)

    public var description: String {
        switch self {
        case .invalidConfig(let m): return "invalid model config: \(m)"
        case .checkpoint(let path, let reason): return "\(path): \(reason)"
        case .input(let m): return m
        }
    }
}

/// The first `shown` of `names` and how many more ("a, b, c, d, e and 3 more"), for a message.
func listing(_ names: [String], shown: Int = 5) -> String {
    names.prefix(shown).joined(separator: ", ") + (names.count > shown ? " and \(names.count - shown) more" : "")
}
