import Foundation

extension Tokenizer {
    /// The bytes of `ids` concatenated. Special tokens decode to their names.
    /// Throws when an id is in neither the vocabulary nor the special tokens.
    public func decodeBytes(_ ids: [Int32]) throws(TextError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 4)
        for id in ids {
            if let bytes = ranks.tokenBytes(Int(id)) {
                out.append(contentsOf: bytes)
            } else if let name = specialName(id) {
                out.append(contentsOf: name.utf8)
            } else {
                throw TextError.unknownTokenID(id)
            }
        }
        return out
    }

    /// Decodes `ids` to text. Byte sequences that are not valid UTF-8 (a multi-byte character
    /// split across a truncation point, say) become U+FFFD, like tiktoken's
    /// `decode(errors="replace")`.
    public func decode(_ ids: [Int32]) throws(TextError) -> String {
        String(decoding: try decodeBytes(ids), as: UTF8.self)
    }

    /// The bytes of one ordinary token, or nil for special and unknown ids.
    public func tokenBytes(_ id: Int32) -> [UInt8]? {
        ranks.tokenBytes(Int(id)).map(Array.init)
    }
}
