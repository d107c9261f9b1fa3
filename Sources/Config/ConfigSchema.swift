import Foundation
import Yams

/// Experiment configuration the nanoGPT way: defaults, then one YAML file, then `key.sub=value`
/// overrides; every key is declared with a type, a default and a help line, and anything else —
/// an unknown key, a duplicate, a value of the wrong type — is an error naming the file, line
/// and key, with the closest valid key suggested.
public enum ConfigType: Equatable, Sendable {
    case int, float, bool, string
    /// A file or folder; relative values resolve against the config file's folder (overrides: the
    /// working folder). Empty means unset.
    case path
    case choice([String])
}

public enum ConfigValue: Equatable, Sendable, CustomStringConvertible {
    case int(Int), float(Double), bool(Bool), string(String)
    public var description: String {
        switch self {
        case .int(let v): return String(v)
        case .float(let v): return v == v.rounded() && abs(v) < 1e15 ? String(format: "%.1f", v) : String(v)
        case .bool(let v): return String(v)
        case .string(let v): return v.isEmpty || v.contains(":") || v.contains("#") || v.hasPrefix(" ") ? "\"\(v)\"" : v
        }
    }
}

public struct ConfigKey: Sendable {
    public let path: String
    public let type: ConfigType
    public let defaultValue: ConfigValue
    public let help: String
    /// nil when `value` is valid, else what is wrong ("must be > 0, got -1").
    public let check: (@Sendable (ConfigValue) -> String?)?
    public init(
        _ path: String, _ type: ConfigType, _ defaultValue: ConfigValue, _ help: String,
        check: (@Sendable (ConfigValue) -> String?)? = nil
    ) {
        self.path = path
        self.type = type
        self.defaultValue = defaultValue
        self.help = help
        self.check = check
    }

    /// The same key under `prefix` ("sft." + "train.lr"), for experiments that nest stages.
    public func prefixed(_ prefix: String) -> ConfigKey {
        ConfigKey(prefix + path, type, defaultValue, help, check: check)
    }
}

public struct ConfigSchema: Sendable {
    public let keys: [ConfigKey]
    let byPath: [String: ConfigKey]
    let sections: Set<String>

    public init(_ keys: [ConfigKey]) {
        self.keys = keys
        var byPath: [String: ConfigKey] = [:]
        var sections = Set<String>()
        for k in keys {
            precondition(byPath[k.path] == nil, "schema declares \(k.path) twice")
            byPath[k.path] = k
            let parts = k.path.split(separator: ".")
            for i in 1..<parts.count { sections.insert(parts[0..<i].joined(separator: ".")) }
        }
        self.byPath = byPath
        self.sections = sections
    }

    /// "; did you mean 'x'?" for the valid key closest to `path`, if any is close.
    func suggestion(for path: String) -> String {
        let candidates = Array(byPath.keys) + Array(sections)
        let scored = candidates.map { ($0, editDistance($0, path)) }.min { $0.1 != $1.1 ? $0.1 < $1.1 : $0.0 < $1.0 }
        // Also match on the last component alone (a key put in the wrong section).
        let leaf = path.split(separator: ".").last.map(String.init) ?? path
        let byLeaf = byPath.keys.first { $0.split(separator: ".").last.map(String.init) == leaf }
        // A known key name in the wrong section beats a near-miss spelling.
        if let byLeaf, !path.contains(".") || byLeaf != path { return "; did you mean '\(byLeaf)'?" }
        if let (best, distance) = scored, distance <= max(2, path.count / 3) { return "; did you mean '\(best)'?" }
        return "; valid keys here: " + validChildren(of: path).joined(separator: ", ")
    }

    func validChildren(of path: String) -> [String] {
        let parent = path.split(separator: ".").dropLast().joined(separator: ".")
        let prefix = parent.isEmpty ? "" : parent + "."
        let children = Set(
            (Array(byPath.keys) + Array(sections)).filter { $0.hasPrefix(prefix) }.map {
                String($0.dropFirst(prefix.count).split(separator: ".")[0])
            })
        return children.sorted()
    }

    /// Parses `text` (a scalar from YAML or an override) as the key's type.
    func parse(_ text: String, for key: ConfigKey, quoted: Bool, at place: String, relativeTo base: String?) throws
        -> ConfigValue
    {
        func bad(_ expected: String) -> ConfigError {
            ConfigError("\(place): '\(key.path)' expects \(expected), got '\(text)'")
        }
        switch key.type {
        case .int:
            guard !quoted, let v = Int(text.replacingOccurrences(of: "_", with: "")) else { throw bad("an integer") }
            return .int(v)
        case .float:
            guard !quoted, let v = Double(text.replacingOccurrences(of: "_", with: "")), v.isFinite else {
                throw bad("a number")
            }
            return .float(v)
        case .bool:
            switch text.lowercased() {
            case "true", "yes", "on": return .bool(true)
            case "false", "no", "off": return .bool(false)
            default: throw bad("true or false")
            }
        case .string:
            return .string(text == "null" && !quoted ? "" : text)
        case .path:
            if (text == "null" && !quoted) || text.isEmpty { return .string("") }
            if text.hasPrefix("/") || base == nil { return .string(text) }
            return .string(
                URL(fileURLWithPath: text, relativeTo: URL(fileURLWithPath: base!, isDirectory: true))
                    .standardizedFileURL.path)
        case .choice(let options):
            guard options.contains(text) else { throw bad("one of \(options.joined(separator: ", "))") }
            return .string(text)
        }
    }

    /// Defaults, then the YAML file (if any), then overrides `a.b=value` in order.
    public func resolve(file: String?, overrides: [String]) throws -> ResolvedConfig {
        var values: [String: ConfigValue] = [:]
        var sources: [String: String] = [:]
        for k in keys {
            values[k.path] = k.defaultValue
            sources[k.path] = "default"
        }
        if let file { try load(file, values: &values, sources: &sources, chain: []) }
        try apply(overrides, to: &values, sources: &sources)
        try validate(values, sources: sources)
        return ResolvedConfig(schema: self, values: values, sources: sources, file: file)
    }

    /// `key.sub=value` overrides, in order, as on the command line.
    func apply(_ overrides: [String], to values: inout [String: ConfigValue], sources: inout [String: String]) throws {
        for override in overrides {
            guard let eq = override.firstIndex(of: "=") else {
                throw ConfigError("override '\(override)': expected key.sub=value")
            }
            let path = String(override[..<eq]), text = String(override[override.index(after: eq)...])
            guard let key = byPath[path] else {
                throw ConfigError("override '\(override)': unknown key '\(path)'\(suggestion(for: path))")
            }
            values[path] = try parse(
                text, for: key, quoted: false, at: "override '\(override)'",
                relativeTo: FileManager.default.currentDirectoryPath)
            sources[path] = "override '\(override)'"
        }
    }

    /// Ranges, once every value is in, naming where the bad one came from.
    func validate(_ values: [String: ConfigValue], sources: [String: String]) throws {
        for key in keys {
            if let check = key.check, let value = values[key.path], let problem = check(value) {
                throw ConfigError("\(sources[key.path] ?? "default"): '\(key.path)' \(problem)")
            }
        }
    }

    /// One YAML file; a top-level `extends: other.yaml` (relative to this file) loads that file
    /// first, so a variant of an experiment states only what differs.
    private func load(
        _ file: String, values: inout [String: ConfigValue], sources: inout [String: String], chain: [String]
    ) throws {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ConfigError("\(file): cannot read")
        }
        try YAMLNesting.check(text, file: file)
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch { throw ConfigError("\(file): not valid YAML: \(error)") }
        let base = URL(fileURLWithPath: file).deletingLastPathComponent().path
        guard let node else { return }
        if case .mapping(let mapping) = node, let parent = mapping["extends"] {
            guard case .scalar(let s) = parent else {
                throw ConfigError("\(parent.mark.map { "\(file):\($0.line)" } ?? file): 'extends' names one file")
            }
            let path = URL(fileURLWithPath: s.string, relativeTo: URL(fileURLWithPath: base, isDirectory: true))
                .standardizedFileURL.path
            guard !chain.contains(path), chain.count < 8 else {
                throw ConfigError("\(file): 'extends' loops back to \(path)")
            }
            try load(
                path, values: &values, sources: &sources,
                chain: chain + [URL(fileURLWithPath: file).standardizedFileURL.path])
        }
        try walk(node, prefix: "", file: file, base: base, values: &values, sources: &sources)
    }

    private func walk(
        _ node: Node, prefix: String, file: String, base: String,
        values: inout [String: ConfigValue], sources: inout [String: String]
    ) throws {
        func line(_ n: Node) -> String { n.mark.map { "\(file):\($0.line)" } ?? file }
        guard case .mapping(let mapping) = node else {
            throw ConfigError("\(line(node)): '\(prefix.isEmpty ? "the file" : prefix)' must be a mapping of keys")
        }
        var seen: [String: String] = [:]
        for (keyNode, valueNode) in mapping {
            guard case .scalar(let keyScalar) = keyNode else {
                throw ConfigError("\(line(keyNode)): keys must be plain names")
            }
            let path = prefix.isEmpty ? keyScalar.string : prefix + "." + keyScalar.string
            if path == "extends" { continue }  // handled by `load`
            if let first = seen[path] {
                throw ConfigError("\(line(keyNode)): duplicate key '\(path)' (first at \(first))")
            }
            seen[path] = line(keyNode)
            if sections.contains(path) {
                if case .scalar(let s) = valueNode, s.string == "null" || s.string.isEmpty { continue }
                try walk(valueNode, prefix: path, file: file, base: base, values: &values, sources: &sources)
                continue
            }
            guard let key = byPath[path] else {
                throw ConfigError("\(line(keyNode)): unknown key '\(path)'\(suggestion(for: path))")
            }
            guard case .scalar(let scalar) = valueNode else {
                throw ConfigError("\(line(valueNode)): '\(path)' expects a single value, not a list or mapping")
            }
            let quoted = scalar.style == .singleQuoted || scalar.style == .doubleQuoted
            values[path] = try parse(scalar.string, for: key, quoted: quoted, at: line(valueNode), relativeTo: base)
            sources[path] = line(valueNode)
        }
    }
}

/// Levenshtein distance, for "did you mean".
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    var previous = Array(0...b.count), current = previous
    for i in 1...a.count {
        current[0] = i
        for j in 1...max(b.count, 1) where !b.isEmpty {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}

/// The values every key resolved to, with where each came from.
public struct ResolvedConfig: Sendable {
    public let schema: ConfigSchema
    public let values: [String: ConfigValue]
    public let sources: [String: String]
    public let file: String?
    /// The keys read so far (for the test that no key is accepted and then ignored).
    public let reads: ConfigReadLog

    init(
        schema: ConfigSchema, values: [String: ConfigValue], sources: [String: String], file: String?,
        reads: ConfigReadLog = ConfigReadLog()
    ) {
        self.schema = schema
        self.values = values
        self.sources = sources
        self.file = file
        self.reads = reads
    }

    /// Whether `path` was given a value (by a file, an override or the experiment), not left at its default.
    public func isSet(_ path: String) -> Bool { (sources[path] ?? "default") != "default" }

    /// The same config with `key` set by the experiment that chains the stages (a run folder, the
    /// checkpoint the stage starts from); the saved YAML shows the value the stage used.
    public func with<Value>(_ key: Key<Value>, _ value: Value) throws -> ResolvedConfig {
        guard values[key.path] != nil else {
            throw ConfigError("'\(key.path)' is not a key of this experiment's \(file ?? "configuration")")
        }
        var values = self.values, sources = self.sources
        values[key.path] = value.configValue
        sources[key.path] = "set by the experiment"
        return ResolvedConfig(schema: schema, values: values, sources: sources, file: file, reads: reads)
    }

    /// User overrides `key=value` applied on top, checked as a file's values are.
    public func overriding(_ overrides: [String]) throws -> ResolvedConfig {
        var values = self.values, sources = self.sources
        try schema.apply(overrides, to: &values, sources: &sources)
        try schema.validate(values, sources: sources)
        return ResolvedConfig(schema: schema, values: values, sources: sources, file: file, reads: reads)
    }

    /// The part of an experiment that one stage reads: `stage`'s keys taken from `prefix`+key
    /// (or, for `shared` keys, from the key itself), keeping where each value came from, so a
    /// stage's error still names the experiment file's line. The read log is shared.
    public func scoped(to stage: ConfigSchema, prefix: String, shared: Set<String>) -> ResolvedConfig {
        var values: [String: ConfigValue] = [:], sources: [String: String] = [:]
        for key in stage.keys {
            let outer = shared.contains(key.path) ? key.path : prefix + key.path
            values[key.path] = self.values[outer] ?? key.defaultValue
            sources[key.path] = self.sources[outer] ?? "default"
        }
        return ResolvedConfig(
            schema: stage, values: values, sources: sources, file: file,
            reads: ConfigReadLog(forwardingTo: reads) { shared.contains($0) ? $0 : prefix + $0 })
    }

    /// The resolved configuration as YAML, in schema order, sections nested, help as comments.
    public var yaml: String {
        var out = ""
        var openSections: [String] = []
        for key in Self.groupedBySection(schema.keys) {
            let parts = key.path.split(separator: ".").map(String.init)
            let sectionPath = Array(parts.dropLast())
            var common = 0
            while common < min(openSections.count, sectionPath.count) && openSections[common] == sectionPath[common] {
                common += 1
            }
            openSections = Array(openSections.prefix(common))
            for depth in common..<sectionPath.count {
                out += String(repeating: "  ", count: depth) + sectionPath[depth] + ":\n"
                openSections.append(sectionPath[depth])
            }
            let value = values[key.path]!.description
            out += String(repeating: "  ", count: sectionPath.count) + "\(parts.last!): \(value)"
            out +=
                String(repeating: " ", count: max(1, 28 - sectionPath.count * 2 - parts.last!.count - value.count))
                + "# \(key.help)\n"
        }
        return out
    }

    /// Keys in schema order, except that each section's keys are printed together (at the place
    /// of the section's first key): YAML allows a mapping key once, so a section split in two
    /// would not load back.
    static func groupedBySection(_ keys: [ConfigKey], depth: Int = 0) -> [ConfigKey] {
        var order: [String] = [], groups: [String: [ConfigKey]] = [:]
        for key in keys {
            let parts = key.path.split(separator: ".")
            let head = parts.count > depth + 1 ? String(parts[depth]) : "\u{0}" + key.path  // a leaf stays in place
            if groups[head] == nil { order.append(head) }
            groups[head, default: []].append(key)
        }
        return order.flatMap { head in
            head.hasPrefix("\u{0}") ? groups[head]! : groupedBySection(groups[head]!, depth: depth + 1)
        }
    }
}
