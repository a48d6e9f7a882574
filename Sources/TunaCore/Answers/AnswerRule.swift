import Foundation

/// How a task evaluation reads an answer out of a reply and decides whether it is right
/// (docs/job-spec.md, `eval.answer`). The reply is the model's `final` channel; the reference
/// is the data set's answer, read with the same extractor (a NuminaMath solution ends in
/// `\boxed{...}`) or, when that finds nothing, taken whole.
public struct AnswerRule: Codable, Sendable, Hashable {
    public enum Extract: String, Codable, Sendable, CaseIterable {
        /// The content of the last `\boxed{...}` (or `\fbox{...}`; nested braces kept; the
        /// `\boxed 5` form up to the next `$`), as lm-evaluation-harness' MATH tasks read it.
        case boxed
        /// The last number: an integer, a decimal, `1,234,567` (commas grouping thousands) or a
        /// fraction `a/b`; a minus sign only where it is not a hyphen after a word or digit.
        case lastNumber = "last_number"
        /// The first capture group of `pattern` at its last match (the whole match when the
        /// pattern has no group), e.g. GSM8K's `#### (-?[0-9.,]+)`.
        case regex
        /// The whole reply.
        case whole
    }

    public enum Compare: String, Codable, Sendable, CaseIterable {
        /// Equal strings after trimming white space at both ends.
        case exact
        /// Equal as numbers (integers, decimals, `a/b`, `\frac`, `\dfrac`, `\tfrac`, signs,
        /// thousands commas; compared as exact fractions, no tolerance) after the MATH
        /// benchmark's clean-up (units in `\text{}`, `$`, `%`, degrees, `\left`/`\right`,
        /// `x = ` with a short left side, spaces); otherwise equal as cleaned-up strings.
        case math
    }

    public var extract = Extract.boxed
    public var compare = Compare.math
    /// The regular expression of `extract: regex` (ICU syntax, as NSRegularExpression reads it).
    public var pattern: String?

    public init(extract: Extract = .boxed, compare: Compare = .math, pattern: String? = nil) {
        self.extract = extract
        self.compare = compare
        self.pattern = pattern
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case extract, compare, pattern }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        extract = try c.decode(Extract.self, forKey: .extract)
        compare = try c.decode(Compare.self, forKey: .compare)
        pattern = try c.decodeIfPresent(String.self, forKey: .pattern)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(extract, forKey: .extract)
        try c.encode(compare, forKey: .compare)
        try c.encodeIfPresent(pattern, forKey: .pattern)  // left out when unused, like every unset optional field
    }

    /// What is wrong with the rule (nil: nothing): a regex extractor needs a pattern that compiles.
    public var problem: String? {
        switch extract {
        case .regex:
            guard let pattern, !pattern.isEmpty else { return "extract: regex needs a pattern" }
            do { _ = try NSRegularExpression(pattern: pattern) } catch { return "pattern \(pattern.debugDescription) is not a regular expression" }
            return nil
        default:
            return pattern == nil ? nil : "pattern is only for extract: regex"
        }
    }
}

/// One graded reply.
public struct GradedAnswer: Sendable, Equatable {
    /// What the extractor found in the reply (nil: nothing, counted wrong).
    public var answer: String?
    /// What the reply is compared with.
    public var expected: String
    public var correct: Bool
}

extension AnswerRule {
    /// Grades `reply` (the final channel's text; nil when the model wrote none) against the
    /// data set's `reference`.
    public func grade(reply: String?, reference: String) -> GradedAnswer {
        let expected = extract(from: reference) ?? reference.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let reply, let answer = extract(from: reply) else { return GradedAnswer(answer: nil, expected: expected, correct: false) }
        return GradedAnswer(answer: answer, expected: expected, correct: matches(answer, expected))
    }

    /// The answer in `text` by this rule's extractor, or nil.
    public func extract(from text: String) -> String? {
        switch extract {
        case .boxed: return AnswerText.lastBoxed(text)
        case .lastNumber: return AnswerText.lastNumber(text)
        case .regex: return pattern.flatMap { AnswerText.lastMatch(text, pattern: $0) }
        case .whole: return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    /// Whether `answer` equals `expected` by this rule's comparison.
    public func matches(_ answer: String, _ expected: String) -> Bool {
        switch compare {
        case .exact:
            return answer.trimmingCharacters(in: .whitespacesAndNewlines) == expected.trimmingCharacters(in: .whitespacesAndNewlines)
        case .math:
            let a = AnswerText.normalized(answer), b = AnswerText.normalized(expected)
            if let x = Fraction(parsing: a), let y = Fraction(parsing: b) { return x == y }
            return a == b
        }
    }
}
