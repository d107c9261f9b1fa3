import Foundation

/// tokenizer.json's `decoder`: tokens back to text, each step mapping a list of token strings to
/// another (tokenizers' decode_chain); the results are concatenated.
indirect enum TokenDecoder: Sendable {
    /// Printable symbols back to bytes (a token with a symbol outside the table keeps its own bytes).
    case byteLevel
    case replace(String, String)
    /// <0xXX> tokens back to bytes; an invalid UTF-8 run becomes one U+FFFD per byte.
    case byteFallback
    case fuse
    case strip(Unicode.Scalar, start: Int, stop: Int)
    case metaspace(replacement: String, prependScheme: PrependScheme)
    case sequence([TokenDecoder])

    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case .sequence(let list): return list.reduce(tokens) { $1.decodeChain($0) }
        case .byteLevel:
            var bytes: [UInt8] = []
            for token in tokens {
                let mapped = token.unicodeScalars.map { ByteLevelPreTokenizer.unicodeToByte[Character($0)] }
                if mapped.allSatisfy({ $0 != nil }) {
                    bytes.append(contentsOf: mapped.map { $0! })
                } else {
                    bytes.append(contentsOf: Array(token.utf8))
                }
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case .replace(let pattern, let content):
            return tokens.map { $0.replacingOccurrences(of: pattern, with: content) }
        case .byteFallback:
            var out: [String] = [], pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validating: pending, as: UTF8.self) {
                    out.append(s)
                } else {
                    out.append(contentsOf: Array(repeating: "\u{FFFD}", count: pending.count))
                }
                pending.removeAll()
            }
            for token in tokens {
                if let byte = Self.fallbackByte(token) {
                    pending.append(byte)
                    continue
                }
                flush()
                out.append(token)
            }
            flush()
            return out
        case .fuse: return [tokens.joined()]
        case .strip(let content, let start, let stop):
            // By scalars: a space before a combining scalar is one Character in Swift but two chars in Rust.
            return tokens.map { token in
                var chars = Array(token.unicodeScalars)
                var cut = 0
                while cut < start && cut < chars.count && chars[cut] == content { cut += 1 }
                chars.removeFirst(cut)
                var trailing = 0
                while trailing < stop && !chars.isEmpty && chars.last == content {
                    chars.removeLast()
                    trailing += 1
                }
                return String(String.UnicodeScalarView(chars))
            }
        case .metaspace(let replacement, let scheme):
            // tokenizers drops every marker of the first token (when a prefix was added), and turns the others into
            // spaces.
            return tokens.enumerated().map { i, token in
                token.replacingOccurrences(of: replacement, with: i == 0 && scheme != .never ? "" : " ")
            }
        }
    }

    /// The byte of a `<0xXX>` token.
    static func fallbackByte(_ token: String) -> UInt8? {
        let u = Array(token.utf8)
        guard u.count == 6, token.hasPrefix("<0x"), u[5] == UInt8(ascii: ">") else { return nil }
        return UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16)
    }

    static func parse(_ json: Any?, fail: (String) -> TokenizerError) throws -> TokenDecoder? {
        guard let json, !(json is NSNull) else { return nil }
        guard let object = json as? [String: Any], let type = object["type"] as? String else {
            throw fail("decoder without a type")
        }
        switch type {
        case "ByteLevel": return .byteLevel
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Replace":
            guard let pattern = object["pattern"] as? [String: Any], let literal = pattern["String"] as? String,
                let content = object["content"] as? String
            else {
                throw fail("decoder Replace needs a String pattern and 'content'")
            }
            return .replace(literal, content)
        case "Strip":
            guard let content = (object["content"] as? String)?.unicodeScalars.first else {
                throw fail("decoder Strip without 'content'")
            }
            return .strip(content, start: object["start"] as? Int ?? 0, stop: object["stop"] as? Int ?? 0)
        case "Metaspace":
            var scheme = PrependScheme.always
            if let name = object["prepend_scheme"] as? String {
                scheme = PrependScheme(rawValue: name) ?? .always
            } else if let add = object["add_prefix_space"] as? Bool {
                scheme = add ? .always : .never
            }
            return .metaspace(replacement: object["replacement"] as? String ?? "\u{2581}", prependScheme: scheme)
        case "Sequence":
            guard let list = object["decoders"] as? [Any] else { throw fail("decoder Sequence without 'decoders'") }
            return .sequence(try list.compactMap { try parse($0, fail: fail) })
        default:
            throw fail(
                "decoder type '\(type)' is not supported (ByteLevel, ByteFallback, Fuse, Replace, Strip, Metaspace, "
                    + "Sequence)"
            )
        }
    }
}
