import Foundation

/// The o200k pre-tokenizer: splits UTF-8 text into the pieces tiktoken's `o200k_base` regex
/// finds, without a regex engine.
///
/// The pattern (tiktoken_ext/openai_public.py, shared by o200k_base and o200k_harmony) is an
/// alternation tried left to right at each position, first match wins:
///
///     1. [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
///     2. [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
///     3. \p{N}{1,3}
///     4.  ?[^\s\p{L}\p{N}]+[\r\n/]*
///     5. \s*[\r\n]+
///     6. \s+(?!\S)
///     7. \s+
///
/// Each alternative is implemented below as a forward scan that reproduces the backtracking
/// engine's answer (greedy quantifiers, then giving back one scalar at a time). Swift's `Regex`
/// gives the same pieces but is two orders of magnitude slower, which matters for data sets.
/// Every scalar is matched by some alternative, so the pieces tile the text with no gaps.
struct O200kSplitter {
    /// UTF-8 bytes; must be valid UTF-8 (any Swift `String`'s `utf8` view is).
    let text: UnsafeBufferPointer<UInt8>
    /// `ScalarClass.table`.
    let classes: UnsafeBufferPointer<UInt8>

    private typealias C = ScalarClass

    /// Flags of the scalar starting at byte `i` and the byte index just after it.
    @inline(__always)
    private func scalar(at i: Int) -> (flags: UInt8, next: Int) {
        let b0 = text[i]
        if b0 < 0x80 { return (classes[Int(b0)], i + 1) }
        var value: Int
        var next: Int
        if b0 < 0xE0 {
            value = Int(b0 & 0x1F) << 6 | Int(text[i + 1] & 0x3F)
            next = i + 2
        } else if b0 < 0xF0 {
            value = Int(b0 & 0x0F) << 12 | Int(text[i + 1] & 0x3F) << 6 | Int(text[i + 2] & 0x3F)
            next = i + 3
        } else {
            value = Int(b0 & 0x07) << 18 | Int(text[i + 1] & 0x3F) << 12
                | Int(text[i + 2] & 0x3F) << 6 | Int(text[i + 3] & 0x3F)
            next = i + 4
        }
        if value < classes.count { return (classes[value], next) }
        guard let s = Unicode.Scalar(UInt32(value)) else { return (0, next) }
        return (ScalarClass.classify(s), next)
    }

    /// Byte index where the piece starting at `start` ends (always > `start`).
    func pieceEnd(from start: Int) -> Int {
        let n = text.count
        let (f0, after0) = scalar(at: start)
        // `[^\r\n\p{L}\p{N}]` — the optional leading scalar of alternatives 1 and 2.
        let leadOK = f0 & (C.letter | C.number | C.crlf) == 0

        // Alternative 1: try with the optional lead taken first, then without (backtracking).
        if leadOK, let end = letters1(from: after0) { return contraction(after: end) }
        if let end = letters1(from: start) { return contraction(after: end) }
        // Alternative 2, same order.
        if leadOK, let end = letters2(from: after0) { return contraction(after: end) }
        if let end = letters2(from: start) { return contraction(after: end) }

        // Alternative 3: one to three numbers.
        if f0 & C.number != 0 {
            var i = after0
            var taken = 1
            while taken < 3, i < n {
                let (f, next) = scalar(at: i)
                if f & C.number == 0 { break }
                i = next
                taken += 1
            }
            return i
        }

        // Alternative 4: optional ASCII space, a run of "other" scalars, trailing [\r\n/]*.
        let other = C.space | C.letter | C.number
        var runStart = -1
        if text[start] == 0x20, after0 < n, scalar(at: after0).flags & other == 0 {
            runStart = after0
        } else if f0 & other == 0 {
            runStart = start
        }
        if runStart >= 0 {
            var i = runStart
            while i < n {
                let (f, next) = scalar(at: i)
                if f & other != 0 { break }
                i = next
            }
            while i < n, text[i] == 0x0D || text[i] == 0x0A || text[i] == 0x2F { i += 1 }
            return i
        }

        // Alternatives 5–7 all start with a white-space run; scan it once.
        if f0 & C.space != 0 {
            var i = after0
            var lastScalarStart = start
            var afterLastNewline = f0 & C.crlf != 0 ? after0 : -1
            while i < n {
                let (f, next) = scalar(at: i)
                if f & C.space == 0 { break }
                if f & C.crlf != 0 { afterLastNewline = next }
                lastScalarStart = i
                i = next
            }
            // 5: `\s*[\r\n]+` — greedy `\s*` gives back until a CR/LF can end the match.
            if afterLastNewline >= 0 { return afterLastNewline }
            // 6: `\s+(?!\S)` — at the end of text the whole run; otherwise leave the last
            // white-space scalar for the next piece (it will prefix the following word).
            if i == n { return i }
            if lastScalarStart > start { return lastScalarStart }
            // 7: `\s+`
            return i
        }
        // Unreachable for valid text (every scalar fits one alternative); advance one scalar
        // rather than loop forever.
        return after0
    }

    /// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+` starting at `j`.
    @inline(__always)
    private func letters1(from j: Int) -> Int? {
        let n = text.count
        var k = j
        var afterLastLower = -1  // end of the last lower-ish scalar inside the upper-ish run
        while k < n {
            let (f, next) = scalar(at: k)
            if f & C.upperish == 0 { break }
            if f & C.lowerish != 0 { afterLastLower = next }
            k = next
        }
        if k < n, scalar(at: k).flags & C.lowerish != 0 {
            // The upper-ish run stopped at a lower-ish scalar: `+` takes the whole lower-ish run.
            var e = k
            while e < n {
                let (f, next) = scalar(at: e)
                if f & C.lowerish == 0 { break }
                e = next
            }
            return e
        }
        // Backtracking `*` hands back scalars until the last one is lower-ish; `+` then takes
        // just that one because the next scalar is not lower-ish.
        return afterLastLower >= 0 ? afterLastLower : nil
    }

    /// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*` starting at `j`.
    @inline(__always)
    private func letters2(from j: Int) -> Int? {
        let n = text.count
        var k = j
        while k < n {
            let (f, next) = scalar(at: k)
            if f & C.upperish == 0 { break }
            k = next
        }
        if k == j { return nil }
        while k < n {
            let (f, next) = scalar(at: k)
            if f & C.lowerish == 0 { break }
            k = next
        }
        return k
    }

    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)?` after `e`. Case-insensitive matching in Rust's regex
    /// uses simple case folding, so `'ſ` (U+017F LATIN SMALL LETTER LONG S) also matches `'s`.
    @inline(__always)
    private func contraction(after e: Int) -> Int {
        let n = text.count
        guard e + 1 < n, text[e] == 0x27 else { return e }
        let c = text[e + 1] | 0x20  // ASCII lower-case
        switch c {
        case 0x73, 0x74, 0x6D, 0x64:  // s t m d
            return text[e + 1] < 0x80 ? e + 2 : e
        case 0x72, 0x76:  // r v, then e
            if text[e + 1] < 0x80, e + 2 < n, text[e + 2] | 0x20 == 0x65 { return e + 3 }
            return e
        case 0x6C:  // l, then l
            if text[e + 1] < 0x80, e + 2 < n, text[e + 2] | 0x20 == 0x6C { return e + 3 }
            return e
        default:
            // U+017F is C5 BF in UTF-8.
            if text[e + 1] == 0xC5, e + 2 < n, text[e + 2] == 0xBF { return e + 3 }
            return e
        }
    }
}
