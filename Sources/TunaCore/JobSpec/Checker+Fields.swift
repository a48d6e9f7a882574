import Foundation

/// Field readers: each returns a usable value (the default when the field is bad or
/// missing) and records a problem that names the field, the value and what was expected.
extension Checker {
    /// A section's fields; `keys` (the section type's coding keys) are the fields it may have.
    mutating func section<K: CodingKey & CaseIterable>(_ v: JSONValue?, _ path: String, keys: K.Type) -> [String: JSONValue] {
        guard let v, v != .null else { return [:] }
        guard let o = v.objectValue else {
            problems.append("\(path): \(v) is not a mapping")
            return [:]
        }
        // Checked without building the list of fields (every job of a large sweep passes here);
        // the list is made only for the message.
        guard o.keys.contains(where: { K(stringValue: $0) == nil }) else { return o }
        let keys = K.allCases.map(\.stringValue).sorted()
        for k in o.keys.sorted() where K(stringValue: k) == nil {
            problems.append("\(path).\(k): unknown field (expected one of \(keys.joined(separator: ", ")))")
        }
        return o
    }

    mutating func string(_ key: String, in o: [String: JSONValue], path: String, required: Bool = false,
                         oneOf allowed: [String]? = nil) -> String? {
        guard let v = o[key], v != .null else {
            if required { problems.append("\(path): required") }
            return nil
        }
        guard let s = v.stringValue, !s.isEmpty else {
            problems.append("\(path): \(v) is not a non-empty string")
            return nil
        }
        if let allowed, !allowed.contains(s) {
            problems.append("\(path): \(v) is not one of \(allowed.joined(separator: ", "))")
            return nil
        }
        return s
    }

    /// One of an enum's raw values; nil (and a problem) when it is not.
    mutating func enumeration<E: RawRepresentable & CaseIterable>(_ key: String, in o: [String: JSONValue], path: String,
                                                                    required: Bool = false, as: E.Type) -> E? where E.RawValue == String {
        if let s = o[key]?.stringValue, let e = E(rawValue: s) { return e }
        return string(key, in: o, path: path, required: required, oneOf: E.allCases.map(\.rawValue)).flatMap(E.init(rawValue:))
    }

    mutating func int(_ key: String, in o: [String: JSONValue], path: String, default d: Int, min: Int) -> Int {
        guard let v = o[key], v != .null else { return d }
        guard let i = v.intValue, i >= min else {
            let what = min == 1 ? "a positive integer" : min == 0 ? "a non-negative integer" : min == Int.min ? "an integer" : "an integer >= \(min)"
            problems.append("\(path): \(v) is not \(what)")
            return d
        }
        return i
    }

    mutating func number(_ key: String, in o: [String: JSONValue], path: String, default d: Double,
                         min: Double, exclusiveMin: Bool = false, max: Double? = nil, below: Double? = nil) -> Double {
        guard let v = o[key], v != .null else { return d }
        let x = v.doubleValue
        var ok = x.map { $0.isFinite && (exclusiveMin ? $0 > min : $0 >= min) } ?? false
        if let max, let x, x > max { ok = false }
        if let below, let x, x >= below { ok = false }
        guard ok, let x else {
            var range = exclusiveMin ? "> \(fmt(min))" : ">= \(fmt(min))"
            if let max { range += " and <= \(fmt(max))" }
            if let below { range += " and < \(fmt(below))" }
            problems.append("\(path): \(v) is not a number \(range)")
            return d
        }
        return x
    }

    mutating func bool(_ key: String, in o: [String: JSONValue], path: String, default d: Bool) -> Bool {
        guard let v = o[key], v != .null else { return d }
        guard let b = v.boolValue else {
            problems.append("\(path): \(v) is not true or false")
            return d
        }
        return b
    }

    private func fmt(_ x: Double) -> String { x.rounded() == x ? String(Int(x)) : "\(x)" }
}
