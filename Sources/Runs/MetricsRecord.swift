import Foundation

/// One line of metrics.jsonl (and the same scalars as TensorBoard events): an Encodable struct
/// whose coding keys are the file's keys. Optional fields that are nil are left out; figures
/// whose names are only known at run time go through `MetricsKey`.
public protocol MetricsRecord: Encodable {}

/// A coding key made at run time (reward_<source>_mean, a learned reward's own figures).
public struct MetricsKey: CodingKey {
    public let stringValue: String
    public var intValue: Int? { nil }
    public init(_ name: String) { stringValue = name }
    public init?(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { nil }
}

extension KeyedEncodingContainer where Key == MetricsKey {
    /// Writes every figure of `figures` under its own name.
    public mutating func encode(figures: [String: Double]) throws {
        for (name, value) in figures { try encode(value, forKey: MetricsKey(name)) }
    }
}

extension RunFolder {
    /// Appends `record` as one metrics line (and its TensorBoard scalars).
    public func append(_ record: some MetricsRecord) throws { try appendMetrics(MetricsObject.fields(of: record)) }
}

/// Turns a flat Encodable record into the [key: value] object metrics.jsonl writes. Only flat
/// records of numbers, strings and booleans are metrics; anything nested is an encoding error.
public enum MetricsObject {
    public static func fields(of record: some Encodable) throws -> [String: Any] {
        let encoder = FlatEncoder()
        try record.encode(to: encoder)
        return encoder.fields
    }
}

private final class FlatEncoder: Encoder {
    var fields: [String: Any] = [:]
    let codingPath: [any CodingKey] = []
    let userInfo: [CodingUserInfoKey: Any] = [:]

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(FlatContainer<Key>(encoder: self))
    }
    func unkeyedContainer() -> any UnkeyedEncodingContainer { NotFlat(codingPath: codingPath) }
    func singleValueContainer() -> any SingleValueEncodingContainer { NotFlat(codingPath: codingPath) }
}

private struct FlatContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let encoder: FlatEncoder
    var codingPath: [any CodingKey] { [] }

    mutating func encodeNil(forKey key: Key) throws {}
    mutating func encode(_ value: Bool, forKey key: Key) throws { encoder.fields[key.stringValue] = value }
    mutating func encode(_ value: String, forKey key: Key) throws { encoder.fields[key.stringValue] = value }
    mutating func encode(_ value: Double, forKey key: Key) throws { encoder.fields[key.stringValue] = value }
    mutating func encode(_ value: Float, forKey key: Key) throws { encoder.fields[key.stringValue] = Double(value) }
    mutating func encode(_ value: Int, forKey key: Key) throws { encoder.fields[key.stringValue] = value }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        switch value {
        case let v as Double: encoder.fields[key.stringValue] = v
        case let v as Float: encoder.fields[key.stringValue] = Double(v)
        case let v as Int: encoder.fields[key.stringValue] = v
        case let v as Bool: encoder.fields[key.stringValue] = v
        case let v as String: encoder.fields[key.stringValue] = v
        default: throw NotFlat.error(at: [key], value)
        }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key)
        -> KeyedEncodingContainer<NestedKey>
    {
        KeyedEncodingContainer(NotFlatKeyed<NestedKey>())
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        NotFlat(codingPath: [key])
    }
    mutating func superEncoder() -> any Encoder { encoder }
    mutating func superEncoder(forKey key: Key) -> any Encoder { encoder }
}

/// What a nested value gets: every write is an error naming the key, never a silent drop.
private struct NotFlat: UnkeyedEncodingContainer, SingleValueEncodingContainer {
    let codingPath: [any CodingKey]
    var count: Int { 0 }

    static func error(at path: [any CodingKey], _ value: Any) -> EncodingError {
        EncodingError.invalidValue(
            value,
            .init(codingPath: path, debugDescription: "a metrics record holds numbers, strings and booleans only"))
    }
    mutating func encodeNil() throws { throw Self.error(at: codingPath, "nil") }
    mutating func encode<T: Encodable>(_ value: T) throws { throw Self.error(at: codingPath, value) }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) -> KeyedEncodingContainer<
        NestedKey
    > {
        KeyedEncodingContainer(NotFlatKeyed<NestedKey>())
    }
    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { self }
    mutating func superEncoder() -> any Encoder { FlatEncoder() }
}

private struct NotFlatKeyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
    var codingPath: [any CodingKey] { [] }
    mutating func encodeNil(forKey key: Key) throws { throw NotFlat.error(at: [key], "nil") }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { throw NotFlat.error(at: [key], value) }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key)
        -> KeyedEncodingContainer<NestedKey>
    {
        KeyedEncodingContainer(NotFlatKeyed<NestedKey>())
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer { NotFlat(codingPath: [key]) }
    mutating func superEncoder() -> any Encoder { FlatEncoder() }
    mutating func superEncoder(forKey key: Key) -> any Encoder { FlatEncoder() }
}
