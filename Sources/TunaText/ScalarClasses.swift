import Foundation

/// Character classes the o200k pre-tokenizer pattern distinguishes, as bit flags.
///
/// The pattern only asks a handful of questions about each scalar (is it a letter, a number,
/// a mark, in the "upper-ish" or "lower-ish" letter set, white space, CR/LF), so we answer them
/// once per scalar with a table lookup instead of querying Unicode properties repeatedly.
enum ScalarClass {
    /// `\p{L}`
    static let letter: UInt8 = 1 << 0
    /// `\p{N}`
    static let number: UInt8 = 1 << 1
    /// `\p{M}`
    static let mark: UInt8 = 1 << 2
    /// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`
    static let upperish: UInt8 = 1 << 3
    /// `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`
    static let lowerish: UInt8 = 1 << 4
    /// `\s`: the Unicode White_Space property (what Rust's `regex` crate uses for `\s`).
    static let space: UInt8 = 1 << 5
    /// `[\r\n]`
    static let crlf: UInt8 = 1 << 6

    /// Classifies one scalar from its Unicode properties.
    static func classify(_ scalar: Unicode.Scalar) -> UInt8 {
        var flags: UInt8 = 0
        let props = scalar.properties
        switch props.generalCategory {
        case .uppercaseLetter, .titlecaseLetter:
            flags = letter | upperish
        case .lowercaseLetter:
            flags = letter | lowerish
        case .modifierLetter, .otherLetter:
            flags = letter | upperish | lowerish
        case .nonspacingMark, .spacingMark, .enclosingMark:
            flags = mark | upperish | lowerish
        case .decimalNumber, .letterNumber, .otherNumber:
            flags = number
        default:
            flags = 0
        }
        if props.isWhitespace { flags |= space }
        if scalar == "\r" || scalar == "\n" { flags |= crlf }
        return flags
    }

    /// Scalars below this are answered from `table`; above it we ask the properties directly.
    /// 0x40000 covers the BMP, emoji (plane 1) and the CJK extensions (planes 2 and 3).
    static let tableLimit = 0x40000

    /// Precomputed flags for every scalar below `tableLimit` (surrogates stay 0; they never
    /// occur in a Swift `String`). Built once per process, lazily and thread-safely.
    static let table: [UInt8] = {
        var t = [UInt8](repeating: 0, count: tableLimit)
        for value in 0..<tableLimit {
            if let scalar = Unicode.Scalar(UInt32(value)) { t[value] = classify(scalar) }
        }
        return t
    }()
}
