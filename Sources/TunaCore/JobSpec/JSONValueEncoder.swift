import Foundation

/// Encodes a value straight to a `JSONValue` tree, keeping integers and floating-point numbers
/// apart (`16` and `16.0` are different canonical JSON, hence different job hashes) and
/// skipping the text round trip a `JSONEncoder` would need (a million-job sweep encodes a
/// million specs).
public struct JSONValueEncoder {
    public init() {}

    public func encode<T: Encodable>(_ value: T) throws -> JSONValue {
        let slot = Slot()
        try slot.store(value, codingPath: [])
        return slot.resolved
    }
}

/// One node of the tree being built: a value, or an object or array still being filled.
private final class Slot {
    var value: JSONValue = .null
    var object: [String: Slot]?
    var array: [Slot]?

    var resolved: JSONValue {
        if let object { return .object(object.mapValues(\.resolved)) }
        if let array { return .array(array.map(\.resolved)) }
        return value
    }

    func store<T: Encodable>(_ v: T, codingPath: [CodingKey]) throws {
        switch v {
        case let j as JSONValue: value = j
        case let b as Bool: value = .bool(b)
        case let s as String: value = .string(s)
        case let d as Double: value = .number(d)
        case let f as Float: value = .number(Double(f))
        case let i as Int: value = .int(i)
        case let i as Int64: value = .int(Int(i))
        case let i as Int32: value = .int(Int(i))
        case let u as UInt64 where u <= UInt64(Int.max): value = .int(Int(u))
        default: try v.encode(to: SlotEncoder(slot: self, codingPath: codingPath))
        }
    }
}

private struct SlotEncoder: Encoder {
    let slot: Slot
    let codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy: Key.Type) -> KeyedEncodingContainer<Key> {
        if slot.object == nil { slot.object = [:] }
        return KeyedEncodingContainer(Keyed<Key>(slot: slot, codingPath: codingPath))
    }

    func unkeyedContainer() -> UnkeyedEncodingContainer {
        if slot.array == nil { slot.array = [] }
        return Unkeyed(slot: slot, codingPath: codingPath)
    }

    func singleValueContainer() -> SingleValueEncodingContainer { Single(slot: slot, codingPath: codingPath) }
}

private struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let slot: Slot
    let codingPath: [CodingKey]

    private func child(_ key: Key) -> Slot {
        let s = Slot()
        slot.object![key.stringValue] = s
        return s
    }

    mutating func encodeNil(forKey key: Key) throws { child(key).value = .null }
    // The plain values a job spec is made of, stored directly: the generic path below costs a
    // coding path and a chain of casts per field, a million times for a large sweep.
    mutating func encode(_ value: Bool, forKey key: Key) throws { child(key).value = .bool(value) }
    mutating func encode(_ value: String, forKey key: Key) throws { child(key).value = .string(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws { child(key).value = .number(value) }
    mutating func encode(_ value: Int, forKey key: Key) throws { child(key).value = .int(value) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try child(key).store(value, codingPath: codingPath + [key])
    }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        SlotEncoder(slot: child(key), codingPath: codingPath + [key]).container(keyedBy: NestedKey.self)
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
        SlotEncoder(slot: child(key), codingPath: codingPath + [key]).unkeyedContainer()
    }
    mutating func superEncoder() -> Encoder { SlotEncoder(slot: slot, codingPath: codingPath) }
    mutating func superEncoder(forKey key: Key) -> Encoder { SlotEncoder(slot: child(key), codingPath: codingPath + [key]) }
}

private struct Unkeyed: UnkeyedEncodingContainer {
    let slot: Slot
    let codingPath: [CodingKey]
    var count: Int { slot.array!.count }

    private func next() -> Slot {
        let s = Slot()
        slot.array!.append(s)
        return s
    }

    mutating func encodeNil() throws { next().value = .null }
    mutating func encode(_ value: String) throws { next().value = .string(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { try next().store(value, codingPath: codingPath) }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        SlotEncoder(slot: next(), codingPath: codingPath).container(keyedBy: NestedKey.self)
    }
    mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer { SlotEncoder(slot: next(), codingPath: codingPath).unkeyedContainer() }
    mutating func superEncoder() -> Encoder { SlotEncoder(slot: next(), codingPath: codingPath) }
}

private struct Single: SingleValueEncodingContainer {
    let slot: Slot
    let codingPath: [CodingKey]
    mutating func encodeNil() throws { slot.value = .null }
    // What an enum with a raw value encodes through (most of a job spec's choices).
    mutating func encode(_ value: String) throws { slot.value = .string(value) }
    mutating func encode(_ value: Int) throws { slot.value = .int(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { try slot.store(value, codingPath: codingPath) }
}
