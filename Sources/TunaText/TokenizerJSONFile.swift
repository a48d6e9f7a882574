import Foundation

/// Reader for the Hugging Face `tokenizer.json` that gpt-oss checkpoints ship.
///
/// Only what the o200k tokenizer needs is read: `model.vocab` (byte-level, GPT-2 style
/// unicode strings → ids) and `added_tokens` (the specials). `model.merges` is not consulted:
/// in tiktoken-derived vocabularies the merge priority of a pair is the id of the merged
/// token, which is exactly the rank the BPE loop already uses, so both files yield the same
/// ranks table. The pre-tokenizer is not read either; TunaText always applies the o200k
/// pattern, and `load` rejects files whose `model.type` is not BPE.
enum TokenizerJSONFile {
    struct Contents {
        var ranks: RankTable
        var specials: [String: Int32]
    }

    static func load(_ url: URL) throws(TextError) -> Contents {
        let path = url.path
        func fail(_ reason: String) -> TextError { .tokenizerFile(path: path, line: nil, reason: reason) }
        let root: [String: Any]
        do {
            let data = try Data(contentsOf: url)
            guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw fail("top level is not a JSON object")
            }
            root = object
        } catch let error as TextError {
            throw error
        } catch {
            throw fail("cannot read or parse JSON: \(error.localizedDescription)")
        }
        guard let model = root["model"] as? [String: Any] else { throw fail("missing \"model\" object") }
        if let type = model["type"] as? String, type != "BPE" {
            throw fail("model.type is \"\(type)\"; only BPE is supported")
        }
        guard let vocab = model["vocab"] as? [String: Any] else { throw fail("missing \"model.vocab\" object") }

        var specials: [String: Int32] = [:]
        if let added = root["added_tokens"] {
            guard let list = added as? [[String: Any]] else { throw fail("\"added_tokens\" is not a list of objects") }
            for (index, token) in list.enumerated() {
                guard let content = token["content"] as? String, let id = (token["id"] as? NSNumber)?.intValue,
                      id >= 0, id < 1 << 24
                else { throw fail("added_tokens[\(index)] needs a string \"content\" and an integer \"id\"") }
                specials[content] = Int32(id)
            }
        }
        let specialIDs = Set(specials.values)

        let decoder = ByteLevelDecoder()
        var entries: [(bytes: [UInt8], rank: Int)] = []
        entries.reserveCapacity(vocab.count)
        for (text, value) in vocab {
            guard let id = (value as? NSNumber)?.intValue else { throw fail("vocab entry \(quoted(text)) has a non-integer id") }
            // Some exports repeat the added tokens inside the vocab (possibly under another
            // name, like 200018's two names); an added token's id is a special, not a BPE rank.
            if specialIDs.contains(Int32(truncatingIfNeeded: id)) { continue }
            guard let bytes = decoder.bytes(of: text) else {
                throw fail("vocab entry \(quoted(text)) (id \(id)) is not a byte-level token")
            }
            entries.append((bytes, id))
        }
        do {
            return Contents(ranks: try RankTable(entries: entries), specials: specials)
        } catch {
            throw fail(error.reason)
        }
    }

    private static func quoted(_ text: String) -> String {
        "\"" + text.unicodeScalars.map { $0.escaped(asASCII: true) }.joined() + "\""
    }
}

/// GPT-2's byte-level alphabet, inverted: each byte 0...255 is written as one printable
/// unicode scalar in `tokenizer.json` (printable Latin-1 bytes as themselves, the others
/// shifted to U+0100 and up, in byte order). This maps the scalars back to bytes.
struct ByteLevelDecoder {
    /// `byteOf[scalar]` for scalars below 324; -1 where the scalar is not in the alphabet.
    private let byteOf: [Int16]

    init() {
        var table = [Int16](repeating: -1, count: 324)
        var next = 256
        for byte in 0..<256 {
            let printable = (33...126).contains(byte) || (161...172).contains(byte) || (174...255).contains(byte)
            if printable {
                table[byte] = Int16(byte)
            } else {
                table[next] = Int16(byte)
                next += 1
            }
        }
        byteOf = table
    }

    /// The bytes a vocab string stands for, or nil if it uses scalars outside the alphabet.
    func bytes(of text: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.unicodeScalars.count)
        for scalar in text.unicodeScalars {
            let v = Int(scalar.value)
            guard v < byteOf.count, byteOf[v] >= 0 else { return nil }
            out.append(UInt8(byteOf[v]))
        }
        return out.isEmpty ? nil : out
    }

    /// The inverse, for writing vocab strings (used by tests and tools that export vocabularies).
    static func encode(_ bytes: [UInt8]) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { if let u = Unicode.Scalar(scalarOf[Int(b)]) { s.append(u) } }
        return String(s)
    }

    private static let scalarOf: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        for (scalar, byte) in ByteLevelDecoder().byteOf.enumerated() where byte >= 0 { table[Int(byte)] = UInt32(scalar) }
        return table
    }()
}
