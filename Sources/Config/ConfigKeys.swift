import Foundation

/// A Swift type a config key can hold: its schema type, and the conversion from the parsed value.
public protocol ConfigScalar: Sendable {
    static var configType: ConfigType { get }
    init?(configValue: ConfigValue)
    var configValue: ConfigValue { get }
}

extension Int: ConfigScalar {
    public static var configType: ConfigType { .int }
    public init?(configValue: ConfigValue) {
        guard case .int(let v) = configValue else { return nil }
        self = v
    }
    public var configValue: ConfigValue { .int(self) }
}

extension Double: ConfigScalar {
    public static var configType: ConfigType { .float }
    public init?(configValue: ConfigValue) {
        guard case .float(let v) = configValue else { return nil }
        self = v
    }
    public var configValue: ConfigValue { .float(self) }
}

extension Bool: ConfigScalar {
    public static var configType: ConfigType { .bool }
    public init?(configValue: ConfigValue) {
        guard case .bool(let v) = configValue else { return nil }
        self = v
    }
    public var configValue: ConfigValue { .bool(self) }
}

extension String: ConfigScalar {
    public static var configType: ConfigType { .string }
    public init?(configValue: ConfigValue) {
        guard case .string(let v) = configValue else { return nil }
        self = v
    }
    public var configValue: ConfigValue { .string(self) }
}

/// A file or folder named in a config: relative values resolve against the config file's folder
/// (overrides: the working folder). Empty means unset.
public struct ConfigPath: ConfigScalar, Hashable, ExpressibleByStringLiteral, CustomStringConvertible {
    public var path: String
    public init(_ path: String) { self.path = path }
    public init(stringLiteral path: String) { self.path = path }
    public static var configType: ConfigType { .path }
    public init?(configValue: ConfigValue) {
        guard case .string(let v) = configValue else { return nil }
        path = v
    }
    public var configValue: ConfigValue { .string(path) }
    public var isEmpty: Bool { path.isEmpty }
    public var description: String { path }
}

/// A choice among named options: an enum whose raw values are what a config file says.
public protocol ConfigChoice: ConfigScalar, CaseIterable, RawRepresentable where RawValue == String {}

extension ConfigChoice {
    public static var configType: ConfigType { .choice(allCases.map(\.rawValue)) }
    public init?(configValue: ConfigValue) {
        guard case .string(let v) = configValue else { return nil }
        self.init(rawValue: v)
    }
    public var configValue: ConfigValue { .string(rawValue) }
}

/// A range or rule a key's value must satisfy, checked once at load; the error names the file
/// and line (or override) the value came from.
public struct ConfigCheck<Value: Sendable>: Sendable {
    /// What a valid value is, completing "must be …".
    public let requirement: String
    public let isValid: @Sendable (Value) -> Bool
    public init(_ requirement: String, _ isValid: @escaping @Sendable (Value) -> Bool) {
        self.requirement = requirement
        self.isValid = isValid
    }
}

extension ConfigCheck where Value: Comparable & Numeric & Sendable {
    public static var positive: ConfigCheck { ConfigCheck("> 0") { $0 > 0 } }
    public static var nonNegative: ConfigCheck { ConfigCheck("≥ 0") { $0 >= 0 } }
    public static func atLeast(_ low: Value) -> ConfigCheck { ConfigCheck("≥ \(low)") { $0 >= low } }
    /// [low, high]
    public static func within(_ low: Value, _ high: Value) -> ConfigCheck {
        ConfigCheck("in [\(low), \(high)]") { $0 >= low && $0 <= high }
    }
    /// [low, high)
    public static func from(_ low: Value, below high: Value) -> ConfigCheck {
        ConfigCheck("in [\(low), \(high))") { $0 >= low && $0 < high }
    }
    /// (low, high]
    public static func above(_ low: Value, upTo high: Value) -> ConfigCheck {
        ConfigCheck("in (\(low), \(high)]") { $0 > low && $0 <= high }
    }
}

/// A declared config key whose value is a `Value`. The declaration (type, default, help, valid
/// range) and every read are this one value, so code cannot read a key that was never declared,
/// nor read it as another type.
public struct Key<Value: ConfigScalar>: Sendable {
    public let path: String
    public let defaultValue: Value
    public let help: String
    public let check: ConfigCheck<Value>?

    public init(_ path: String, _ defaultValue: Value, _ help: String, _ check: ConfigCheck<Value>? = nil) {
        self.path = path
        self.defaultValue = defaultValue
        self.help = help
        self.check = check
    }

    /// The same key with another default (a stage whose default differs).
    public func withDefault(_ value: Value) -> Key { Key(path, value, help, check) }

    /// The schema entry: type, default, help and the type-erased check.
    public var declaration: ConfigKey {
        var erased: (@Sendable (ConfigValue) -> String?)?
        if let check {
            erased = { (value: ConfigValue) -> String? in
                guard let v = Value(configValue: value), !check.isValid(v) else { return nil }
                return "must be \(check.requirement), got \(value)"
            }
        }
        return ConfigKey(path, Value.configType, defaultValue.configValue, help, check: erased)
    }
}

extension ResolvedConfig {
    /// The value of a declared key. Reading a key that is not in this config's schema is a
    /// programming error (the config tests construct every stage from its schema's defaults).
    public subscript<Value>(_ key: Key<Value>) -> Value {
        reads.record(key.path)
        guard let raw = values[key.path] else {
            preconditionFailure("config: '\(key.path)' is not a key of this schema")
        }
        guard let value = Value(configValue: raw) else {
            preconditionFailure("config: '\(key.path)' holds \(raw), not a \(Value.self)")
        }
        return value
    }

    /// The value of `key` when this schema declares it, else nil.
    public func optional<Value>(_ key: Key<Value>) -> Value? { values[key.path] == nil ? nil : self[key] }
}

/// Which keys a stage read: the config tests check that every declared key is used (none is
/// accepted and then ignored).
public final class ConfigReadLog: @unchecked Sendable {
    private let lock = NSLock()
    private var paths = Set<String>()
    /// A scoped config's log passes each read on to the experiment's, under the outer key's name.
    private let parent: ConfigReadLog?
    private let outerPath: @Sendable (String) -> String
    public init() {
        parent = nil
        outerPath = { $0 }
    }
    init(forwardingTo parent: ConfigReadLog, outerPath: @escaping @Sendable (String) -> String) {
        self.parent = parent
        self.outerPath = outerPath
    }
    func record(_ path: String) {
        lock.lock()
        paths.insert(path)
        lock.unlock()
        parent?.record(outerPath(path))
    }
    public var read: Set<String> {
        lock.lock()
        defer { lock.unlock() }
        return paths
    }
}

extension Array where Element == ConfigKey {
    /// The keys less those a stage has no use for (it would accept them and ignore them).
    public func without(_ paths: Set<String>) -> [ConfigKey] { filter { !paths.contains($0.path) } }
}

/// Comma-separated names, blanks dropped (list-valued keys such as lora.targets).
public func commaList(_ text: String) -> [String] {
    text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
}
