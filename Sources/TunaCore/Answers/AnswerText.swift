import Foundation

/// The text work of answer grading: extraction and the MATH benchmark's normalisation
/// (Hendrycks et al.'s `strip_string`, as lm-evaluation-harness keeps it), written out here.
enum AnswerText {
    /// The content of the last `\boxed{...}` / `\fbox{...}`, braces balanced; nil when there
    /// is none or it is not closed (a reply cut off by the token limit).
    static func lastBoxed(_ text: String) -> String? {
        guard let at = text.range(of: "\\boxed", options: .backwards) ?? text.range(of: "\\fbox", options: .backwards) else { return nil }
        let rest = text[at.upperBound...]
        if rest.hasPrefix(" ") {  // `\boxed 5$`
            let body = rest.dropFirst().prefix { $0 != "$" }
            let answer = body.trimmingCharacters(in: .whitespaces)
            return answer.isEmpty ? nil : answer
        }
        guard rest.first == "{" else { return nil }
        var depth = 0
        for i in rest.indices {
            switch rest[i] {
            case "{": depth += 1
            case "}":
                depth -= 1
                if depth == 0 { return String(rest[rest.index(after: rest.startIndex)..<i]) }
            default: break
            }
        }
        return nil
    }

    /// Numbers as `lastNumber` reads them: thousands groups first, so `1,234` is one number and
    /// `1,2` two; a fraction `a/b`; a sign unless it follows a letter or digit (`3-5` is a range).
    private static let number = try! NSRegularExpression(
        pattern: #"(?<![\p{L}\p{N}])[-−]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?:/\d+)?|(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?:/\d+)?"#)

    static func lastNumber(_ text: String) -> String? {
        let all = number.matches(in: text, range: NSRange(text.startIndex..., in: text))
        guard let last = all.last, let r = Range(last.range, in: text) else { return nil }
        return text[r].replacingOccurrences(of: ",", with: "").replacingOccurrences(of: "−", with: "-")
    }

    static func lastMatch(_ text: String, pattern: String) -> String? {
        guard let re = try? NSRegularExpression(pattern: pattern) else { return nil }
        guard let m = re.matches(in: text, range: NSRange(text.startIndex..., in: text)).last else { return nil }
        let range = m.numberOfRanges > 1 && m.range(at: 1).location != NSNotFound ? m.range(at: 1) : m.range
        return Range(range, in: text).map { String(text[$0]) }
    }

    /// The MATH clean-up: what two ways of writing one answer have in common.
    static func normalized(_ input: String) -> String {
        var s = input.replacingOccurrences(of: "\n", with: "").replacingOccurrences(of: "\\!", with: "")
        s = s.replacingOccurrences(of: "\\\\", with: "\\").replacingOccurrences(of: "−", with: "-")
        s = s.replacingOccurrences(of: "tfrac", with: "frac").replacingOccurrences(of: "dfrac", with: "frac")
        s = s.replacingOccurrences(of: "\\left", with: "").replacingOccurrences(of: "\\right", with: "")
        s = s.replacingOccurrences(of: "^{\\circ}", with: "").replacingOccurrences(of: "^\\circ", with: "")
        s = s.replacingOccurrences(of: "\\$", with: "").replacingOccurrences(of: "$", with: "")
        if let unit = s.range(of: "\\text{ ") { s = String(s[..<unit.lowerBound]) }  // `12 \text{ cm}`
        s = s.replacingOccurrences(of: "\\%", with: "").replacingOccurrences(of: "%", with: "")
        s = s.trimmingCharacters(in: .whitespaces)
        if s.hasSuffix(".") { s.removeLast() }
        if s.hasPrefix(".") { s = "0" + s }
        s = s.replacingOccurrences(of: " .", with: " 0.").replacingOccurrences(of: "{.", with: "{0.")
        // `x = 5`, `y=2x+1`: the right side, when the left is a short name
        let sides = s.split(separator: "=", omittingEmptySubsequences: false)
        if sides.count == 2, sides[0].trimmingCharacters(in: .whitespaces).count <= 2 {
            s = sides[1].trimmingCharacters(in: .whitespaces)
        }
        s = fixSqrt(s)
        s = s.replacingOccurrences(of: " ", with: "")
        s = fixFracs(s)
        while s.hasPrefix("{"), s.hasSuffix("}"), balanced(s.dropFirst().dropLast()) { s = String(s.dropFirst().dropLast()) }
        return s
    }

    /// `\sqrt3` -> `\sqrt{3}`.
    private static func fixSqrt(_ s: String) -> String {
        var out = "", rest = Substring(s)
        while let r = rest.range(of: "\\sqrt") {
            out += rest[..<r.upperBound]
            rest = rest[r.upperBound...]
            if let c = rest.first, c != "{", !c.isWhitespace {
                out += "{\(c)}"
                rest = rest.dropFirst()
            }
        }
        return out + rest
    }

    /// `\frac12` -> `\frac{1}{2}`, `\frac1{2}` -> `\frac{1}{2}`.
    private static func fixFracs(_ s: String) -> String {
        var out = "", rest = Substring(s)
        while let r = rest.range(of: "\\frac") {
            out += rest[..<r.upperBound]
            rest = rest[r.upperBound...]
            for _ in 0..<2 {
                guard let c = rest.first else { break }
                if c == "{" {
                    // copy the group as it is
                    var depth = 0, end = rest.startIndex
                    for i in rest.indices {
                        if rest[i] == "{" { depth += 1 } else if rest[i] == "}" { depth -= 1; if depth == 0 { end = rest.index(after: i); break } }
                    }
                    if depth != 0 { return out + rest }
                    out += rest[..<end]
                    rest = rest[end...]
                } else {
                    out += "{\(c)}"
                    rest = rest.dropFirst()
                }
            }
        }
        return out + rest
    }

    static func balanced(_ s: Substring) -> Bool {
        var depth = 0
        for c in s {
            if c == "{" { depth += 1 } else if c == "}" { depth -= 1; if depth < 0 { return false } }
        }
        return depth == 0
    }
}

/// An exact fraction p/q (q > 0, lowest terms), for comparing numeric answers without a
/// tolerance. Parses what `AnswerText.normalized` leaves of a number: `-12`, `2.50`, `1,000`,
/// `3/4`, `\frac{-2}{3}`, `-\frac{2}{3}`. Anything else (or an overflow) is not a number.
struct Fraction: Equatable {
    let p: Int, q: Int

    /// nil for q = 0 and where a value does not fit (Int.min has no negation).
    init?(_ p: Int, _ q: Int) {
        guard q != 0, p != .min, q != .min else { return nil }
        func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? abs(a) : gcd(b, a % b) }
        let g = max(gcd(p, q), 1), sign = q < 0 ? -1 : 1
        self.p = sign * (p / g)
        self.q = sign * (q / g)
    }

    init?(parsing text: String) {
        var s = Substring(text), negative = false
        if s.hasPrefix("-") { negative = true; s = s.dropFirst() }
        let value: Fraction?
        if s.hasPrefix("\\frac{"), s.hasSuffix("}"), let mid = s.range(of: "}{") {
            let num = s[s.index(s.startIndex, offsetBy: 6)..<mid.lowerBound], den = s[mid.upperBound..<s.index(before: s.endIndex)]
            guard let a = Fraction(parsing: String(num)), let b = Fraction(parsing: String(den)) else { return nil }
            value = a.divided(by: b)
        } else if let slash = s.firstIndex(of: "/") {
            guard let a = Fraction.decimal(s[..<slash]), let b = Fraction.decimal(s[s.index(after: slash)...]) else { return nil }
            value = a.divided(by: b)
        } else {
            value = Fraction.decimal(s)
        }
        guard let value, let signed = negative ? Fraction(-value.p, value.q) : value else { return nil }
        self = signed
    }

    /// `1,234.50` and the like (commas only as thousands groups; no sign: `init(parsing:)`
    /// takes one).
    static func decimal(_ text: Substring) -> Fraction? {
        var s = text
        if s.contains(",") {
            let halves = s.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
            let whole = halves[0]
            if halves.count > 1, halves[1].contains(",") { return nil }  // `.5,000`: commas group the whole part only
            let groups = whole.split(separator: ",", omittingEmptySubsequences: false)
            guard (1...3).contains(groups[0].count), groups.dropFirst().allSatisfy({ $0.count == 3 }) else { return nil }
            s = Substring(s.replacingOccurrences(of: ",", with: ""))
        }
        let parts = s.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let intPart = parts[0], fracPart = parts.count > 1 ? parts[1] : ""
        guard !(intPart.isEmpty && fracPart.isEmpty), (intPart + fracPart).allSatisfy(\.isASCII),
              (intPart + fracPart).allSatisfy(\.isNumber), fracPart.count <= 18, intPart.count <= 18 else { return nil }
        var scale = 1
        for _ in 0..<fracPart.count { scale *= 10 }
        let (scaled, overflow) = (Int(intPart.isEmpty ? "0" : intPart) ?? 0).multipliedReportingOverflow(by: scale)
        guard !overflow, let f = Int(fracPart.isEmpty ? "0" : fracPart) else { return nil }
        let (num, o2) = scaled.addingReportingOverflow(f)
        guard !o2 else { return nil }
        return Fraction(num, scale)
    }

    func divided(by other: Fraction) -> Fraction? {
        let (a, o1) = p.multipliedReportingOverflow(by: other.q), (b, o2) = q.multipliedReportingOverflow(by: other.p)
        return o1 || o2 ? nil : Fraction(a, b)
    }
}
